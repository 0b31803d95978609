"""TaskScope: every task aioack starts is owned by a scope, and none outlives it.

Why not ``asyncio.TaskGroup``: a TaskGroup's exit waits for ever for a child
that does not end (a cancel swallowed by a client library, as redis-py does
now and then: see ``_cancel``), and one child's crash cancels its siblings
through an ExceptionGroup. A worker's shutdown needs ordered steps, each
with a bound. A scope cancels what is left on close, waits a bounded time,
cancels once more (a cancel that landed in a cleanup handler), and says
which task did not end rather than hang.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

logger = logging.getLogger("aioack.worker")

T = TypeVar("T")


class TaskScope:
    """Owns the tasks it starts. ``async with TaskScope("name") as scope: scope.start(...)``."""

    def __init__(
        self,
        name: str,
        *,
        close_timeout_s: float = 1.0,
        on_done: Callable[[asyncio.Task[Any]], None] | None = None,
    ) -> None:
        self.name = name
        self.close_timeout_s = close_timeout_s
        self._tasks: set[asyncio.Task[Any]] = set()
        # One done-callback per task, not two: each is an event-loop step, and
        # the worker starts a task per run.
        self._on_done = on_done
        self._done = self._tasks.discard if on_done is None else self._discard_then_report

    def start(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a task of this scope (the scope's ``on_done`` runs when it ends)."""
        task = asyncio.get_running_loop().create_task(coro, name=name or f"aioack-{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _discard_then_report(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        assert self._on_done is not None
        self._on_done(task)

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)

    async def cancel(self, tasks: Iterable[asyncio.Task[Any]] | None = None) -> bool:
        """Cancel ``tasks`` (default: all of this scope's) and wait for them, bounded.

        Cancelled twice: a first cancel can land in a task's cleanup (a run
        requeueing its delivery while the broker is down); the second ends it
        there. Returns False, and logs which, when some task still did not end.
        """
        pending = set(self._tasks if tasks is None else tasks) - {asyncio.current_task()}
        for _ in range(2):
            if not pending:
                return True
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=self.close_timeout_s / 2)
        names = ", ".join(sorted(t.get_name() for t in pending))
        logger.error(
            "%s: tasks did not end when cancelled and were left behind: %s", self.name, names
        )
        return False

    async def __aenter__(self) -> TaskScope:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cancel()
