"""The worker's view of revocations: which task ids it must not run.

At start the worker reads every live revocation from the result backend
(so one made before it started still holds), then a loop follows the
backend's log for new ones (Redis: a blocking stream read, heard at once;
SQLite: a read each ``poll_interval``; memory: at once). Checking a task id
is a dict lookup: no round trip per task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aioack._backoff import jittered
from aioack._cancel import raise_swallowed_cancel
from aioack.errors import BrokerError, ConfigurationError
from aioack.results.base import ResultBackend, Revocation

logger = logging.getLogger("aioack.worker")

#: Seconds one read of the log may wait for a new revocation (the loop then reads again).
WATCH_WAIT_S = 5.0
#: Revocations one worker keeps at most; past it, those expiring soonest are
#: forgotten (with a warning). 100,000 ids are about 15 MB.
MAX_KEPT = 100_000
#: Longest pause (seconds, before jitter) between reads while the backend is down.
MAX_BACKOFF_S = 5.0


class Revocations:
    """Task ids revoked until their expiry; ``on_terminate`` hears terminate=True ones."""

    def __init__(self, backend: ResultBackend | None, on_terminate: Callable[[str], None]) -> None:
        self._backend = backend
        self._on_terminate = on_terminate
        self._until: dict[str, float] = {}
        self._cursor: str | None = None
        #: False when there is no backend, or it keeps no revocations.
        self.enabled = backend is not None

    def __contains__(self, task_id: object) -> bool:
        until = self._until.get(task_id) if isinstance(task_id, str) else None
        return until is not None and until > time.time()

    async def load(self) -> None:
        """Read every live revocation (before the worker consumes).

        Raises:
            BrokerError: the backend could not be read: the worker does not start
                (it would run tasks that were revoked).
        """
        if self._backend is None:
            return
        try:
            found, self._cursor = await self._backend.revocations_after(None, 0)
        except ConfigurationError as exc:  # a backend without revocations: say so once
            logger.warning("revocations are off: %s", exc)
            self.enabled = False
            return
        self._apply(found)
        while True:  # the rest, in batches
            found, cursor = await self._backend.revocations_after(self._cursor, 0)
            self._apply(found)
            if cursor == self._cursor:
                return
            self._cursor = cursor

    async def watch(self) -> None:
        """Follow the log until cancelled; an outage is waited out, never fatal."""
        backend = self._backend
        if backend is None or not self.enabled:
            return
        backoff_s = 0.0
        while True:
            try:
                found, self._cursor = await backend.revocations_after(self._cursor, WATCH_WAIT_S)
            except BrokerError as exc:
                # A cancel redis-py swallowed can come back as a read error (the
                # task's stale cancel request then breaks every later read
                # timeout): a cancelled watch must stop here, not retry for ever.
                raise_swallowed_cancel()
                backoff_s = min(MAX_BACKOFF_S, backoff_s * 2 or 0.1)
                logger.warning("could not read revocations (%s); again in %.1fs", exc, backoff_s)
                await asyncio.sleep(jittered(backoff_s))
                continue
            backoff_s = 0.0
            self._apply(found)
            raise_swallowed_cancel()

    def _apply(self, found: list[Revocation]) -> None:
        for revocation in found:
            task_id = revocation.task_id
            self._until[task_id] = max(revocation.expires_at, self._until.get(task_id, 0.0))
            if revocation.terminate:
                self._on_terminate(task_id)
        if found:
            logger.info("%d task(s) revoked", len(found), extra={"event": "revoked"})
        if len(self._until) > MAX_KEPT + MAX_KEPT // 10:  # 10% slack: not a sort per batch
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        now = time.time()
        live = {task_id: until for task_id, until in self._until.items() if until > now}
        if len(live) > MAX_KEPT:
            logger.warning(
                "over %d live revocations: forgetting the %d expiring soonest",
                MAX_KEPT,
                len(live) - MAX_KEPT,
            )
            kept = sorted(live.items(), key=lambda item: item[1])[-MAX_KEPT:]
            live = dict(kept)
        self._until = live
