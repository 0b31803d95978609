"""What the worker and scheduler commands share: the lease flag, building the scheduler,
and running it beside a worker (``worker --scheduler``, on when the App declares any)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

from aioack.app import App
from aioack.brokers import MemoryBroker
from aioack.errors import ConfigurationError
from aioack.periodic import DEFAULT_TICK_LEASE_S, Scheduler


def add_lease_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler-lease",
        type=lease_seconds,
        default=DEFAULT_TICK_LEASE_S,
        metavar="SECONDS",
        help="seconds a tick claimed by a scheduler that died stays held before another "
        f"scheduler fires it ({DEFAULT_TICK_LEASE_S:g})",
    )


def new_scheduler(app: App, lease_s: float) -> Scheduler:
    """The App's scheduler, refused here (at start-up) if it cannot work.

    Raises:
        ConfigurationError: a memory:// broker (no other process sees its
            publishes), no result backend (ticks are claimed there), a bad lease.
    """
    if isinstance(app.broker, MemoryBroker):
        raise ConfigurationError(
            "memory:// lives inside one process: a scheduler started from the command line "
            "would publish where no worker can see it"
        )
    if app.results is None:
        raise ConfigurationError(
            "periodic tasks claim each tick in the result backend: give the App results=... "
            "(or --results / AIOACK_RESULTS_URL); for a worker, --no-scheduler turns them off"
        )
    return app.scheduler(lease=lease_s)


@contextlib.asynccontextmanager
async def embedded(app: App, args: argparse.Namespace) -> AsyncIterator[None]:
    """A worker's scheduler, running while the block runs (``--scheduler``, on by default
    when the App declares periodic tasks)."""
    wanted = args.scheduler if args.scheduler is not None else bool(app.schedules)
    if not wanted or not app.schedules:
        yield
        return
    scheduler = new_scheduler(app, args.scheduler_lease)
    async with asyncio.TaskGroup() as group:
        firing = group.create_task(scheduler.run())
        try:
            yield
        finally:
            firing.cancel()  # the worker stopped: so does its scheduler


def lease_seconds(text: str) -> float:
    """An argparse type: a lease, more than 0 and at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} seconds: give more than 0, at most 3600")
    return value
