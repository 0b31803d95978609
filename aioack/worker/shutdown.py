"""Stopping a worker: every step bounded, even when the broker is unreachable.

Steps share one grace deadline (``shutdown_timeout`` after the stop); a step
still waiting on the broker at the deadline is cancelled (what it held stays
unsettled: the broker redelivers it, nothing is acked). Closing gets
``CLOSE_ALLOWANCE_S`` more. A second stop request (``force``) ends the
waiting at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator

from aioack._scope import TaskScope
from aioack.errors import BrokerError
from aioack.worker.settings import CLOSE_ALLOWANCE_S

logger = logging.getLogger("aioack.worker")


class Stopping:
    """One worker's stop: the grace deadline its steps share, and the forced flag."""

    def __init__(self, force: asyncio.Event, grace_s: float) -> None:
        self._force = force
        self.deadline = asyncio.get_running_loop().time() + grace_s
        self._steps = TaskScope("shutdown", close_timeout_s=CLOSE_ALLOWANCE_S)
        #: The grace period ran out with tasks still running (not forced): they
        #: were cancelled. The command line exits SHUTDOWN_TIMEOUT then, not OK.
        self.timed_out = False

    @property
    def forced(self) -> bool:
        return self._force.is_set()

    def closing_deadline(self) -> float:
        """Closing (consumer, connections) gets its allowance, forced or not: it hands
        held deliveries back at once, which a broker otherwise does only after a lease
        or a connection timeout."""
        now = asyncio.get_running_loop().time()
        return (now if self.forced else max(self.deadline, now)) + CLOSE_ALLOWANCE_S

    async def step(self, what: str, work: Awaitable[None], *, closing: bool = False) -> None:
        """Run one step, bounded: until the grace deadline (``closing``: the closing
        deadline); a forced stop shortens it to CLOSE_ALLOWANCE_S, never skips it.
        A step given up on is cancelled and logged."""
        task = self._steps.start(_awaited(work), name=f"aioack-shutdown-{what}")
        if closing or self.forced:
            await self._wait({task}, self.closing_deadline())
        else:
            await self._wait({task}, self.deadline, until_forced=True)
            if not task.done() and self.forced:
                await self._wait({task}, self.closing_deadline())
        if not task.done():
            logger.warning("shutdown: gave up on the step '%s' (broker unreachable?)", what)
            await self._steps.cancel([task])
            return
        error = None if task.cancelled() else task.exception()
        if isinstance(error, BrokerError):
            logger.warning("shutdown: could not %s: %s", what, error)
        elif error is not None:
            logger.error("shutdown: %s failed", what, exc_info=error)

    async def drain(self, runs: TaskScope, shutdown_timeout: float) -> None:
        """Let running tasks finish until the deadline; then cancel them (they are
        handed back, or left to the broker when it is down: never acked)."""
        pending = set(runs.tasks)
        if pending:
            logger.info("waiting up to %.1fs for %d running tasks", shutdown_timeout, len(pending))
        while pending and not self.forced:
            await self._wait(pending, self.deadline, until_forced=True)
            pending = {run for run in pending if not run.done()}
            if asyncio.get_running_loop().time() >= self.deadline:
                break
        if pending:
            self.timed_out = not self.forced
            logger.warning("cancelling %d tasks still running; they are handed back", len(pending))
            await runs.cancel(pending)

    async def _wait(
        self, tasks: set[asyncio.Task[None]], until: float, *, until_forced: bool = False
    ) -> None:
        """Wait for ``tasks`` until ``until`` (loop time), or a forced stop if asked."""
        timeout_s = max(0.0, until - asyncio.get_running_loop().time())
        if not until_forced:
            await asyncio.wait(tasks, timeout=timeout_s)
            return
        if self.forced:
            return
        force = self._steps.start(self._force.wait(), name="aioack-shutdown-force")
        await asyncio.wait({*tasks, force}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        await self._steps.cancel([force])

    async def aclose(self) -> None:
        await self._steps.cancel()


async def _awaited(work: Awaitable[None]) -> None:
    await work


@contextlib.contextmanager
def signals(on_signal: Callable[[signal.Signals], None], install: bool) -> Iterator[None]:
    """SIGTERM/SIGINT call ``on_signal`` while inside, when ``install`` is true."""
    if not install:
        yield
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
