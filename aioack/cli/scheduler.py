"""``python -m aioack scheduler MODULE:APP``: fire the App's periodic tasks until a signal.

Workers run the same scheduler by default (``worker --no-scheduler`` turns
it off): each tick is claimed in the result backend, so any number of
schedulers fire it once (docs/periodic.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from aioack.app import App
from aioack.brokers import MemoryBroker
from aioack.cli.codes import ExitCode
from aioack.cli.worker import add_broker_arguments, app_for, close, seconds
from aioack.errors import ConfigurationError
from aioack.periodic import DEFAULT_TICK_LEASE_S, Scheduler

EXAMPLES = """\
  python -m aioack scheduler myproj.tasks:app
  python -m aioack scheduler myproj.tasks:app --results redis://127.0.0.1:6379/0
  python -m aioack scheduler myproj.tasks:app --scheduler-lease 10
"""


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    parser = commands.add_parser(
        "scheduler",
        help="fire the App's periodic tasks (each tick once, however many schedulers run)",
        epilog="examples:\n" + EXAMPLES + "\n" + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("app", help="the App whose schedules to fire, as module.path:attribute")
    add_broker_arguments(parser)
    add_lease_argument(parser)
    parser.set_defaults(run=run)


def add_lease_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler-lease",
        type=seconds,
        default=DEFAULT_TICK_LEASE_S,
        metavar="SECONDS",
        help="seconds a tick claimed by a scheduler that died stays held before another "
        f"scheduler fires it ({DEFAULT_TICK_LEASE_S:g})",
    )


def run(args: argparse.Namespace) -> int:
    app = app_for(args)
    return asyncio.run(_run(app, args))


async def _run(app: App, args: argparse.Namespace) -> int:
    if not app.schedules:
        raise ConfigurationError(f"{args.app} declares no periodic task (app.periodic(...))")
    scheduler = new_scheduler(app, args.scheduler_lease)
    loop = asyncio.get_running_loop()
    running = asyncio.current_task()
    assert running is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, running.cancel)
    try:
        await scheduler.run()
    except asyncio.CancelledError:
        pass  # a signal: stop; a claim taken and not published was freed on the way out
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await close(app)
    return ExitCode.OK


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
