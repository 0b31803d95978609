"""The SQLite consumer: claims rows in batches, never more than ``prefetch`` held.

Waking up without burning CPU: an idle consumer wakes on a publish made
through the same broker at once (an in-process event), and otherwise every
``poll_interval`` reads the file's change counter (``PRAGMA data_version``:
no query, no lock). Only when it changed, or a delay or a lease is due,
does it look for work with a read, and only when there is some does it
claim it in a write transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aioack._sqlite import SQLiteIO
from aioack.brokers.base import MAX_DELIVERY_COUNT, Consumer, Delivery, wait_out
from aioack.brokers.sqlite import queries


@dataclass(frozen=True, slots=True, eq=False)
class Handle:
    consumer: SQLiteConsumer
    row_id: int
    token: int

    @property
    def held(self) -> queries.Held:
        return (self.row_id, self.consumer.name, self.token)


def consumer_name() -> str:
    """Unique per consumer, readable when inspecting the file: host, pid, a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SQLiteConsumer(Consumer):
    def __init__(
        self,
        io: SQLiteIO,
        queues: Sequence[str],
        prefetch: int,
        *,
        lease_s: float,
        poll_interval_s: float,
        changed: Callable[[], asyncio.Event],
        on_close: Callable[[SQLiteConsumer], None],
        ceilings: Mapping[str, int] | None = None,
    ) -> None:
        self.name = consumer_name()
        #: queue -> max_unacked, for the queues that have one.
        self._ceilings = dict(ceilings or {})
        self.io = io
        self._queues = tuple(queues)
        self._prefetch = prefetch
        self._lease_s = lease_s
        self._poll_s = poll_interval_s
        self._changed = changed
        self._on_close = on_close
        #: (row id, token) of every row this consumer holds.
        self._held: set[tuple[int, int]] = set()
        self._ready: deque[Delivery] = deque()
        self._slot_freed = asyncio.Event()
        self._receiving = True
        self.closed = False
        #: Look for work at the next chance (first get, a change seen, a due time).
        self._look = True
        self._version: int | None = None
        self._wake_at: float | None = None
        #: The broker's change event when this consumer last looked for work: a
        #: local publish replaces it, so a different one means "look again"
        #: even if the publish came while nobody was waiting on it.
        self._seen = changed()

    # -- held rows, shared with the broker's settle methods ------------------

    def holds(self, handle: Handle) -> bool:
        return (handle.row_id, handle.token) in self._held

    def forget(self, handle: Handle) -> None:
        self._held.discard((handle.row_id, handle.token))
        self._slot_freed.set()

    # -- receiving ---------------------------------------------------------

    async def get(self, timeout_s: float) -> Delivery | None:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while self._receiving:
            if self._ready:
                return self._ready.popleft()
            free = self._prefetch - len(self._held)
            remaining_s = deadline - time.monotonic()
            if free <= 0:
                if remaining_s <= 0:
                    return None
                await self._wait_for_slot(remaining_s)
                continue
            if self._look or (self._wake_at is not None and time.time() >= self._wake_at):
                await self._claim(free)  # a claim that failed leaves _look set: tried again
                if self._ready:
                    continue
            if remaining_s <= 0:
                return None
            await self._idle(remaining_s)
        await wait_out(deadline)
        return None

    async def _claim(self, free: int) -> None:
        self._seen = self._changed()
        now = time.time()
        if not await self.io.run(
            functools.partial(queries.has_work, queues=self._queues, now=now), write=False
        ):
            self._wake_at = await self.io.run(
                functools.partial(queries.wake_at, queues=self._queues, now=now), write=False
            )
            self._look = False
            return
        rows, self._wake_at = await self.io.run(
            functools.partial(
                queries.claim,
                queues=self._queues,
                owner=self.name,
                limit=free,
                now=now,
                lease_until=now + self._lease_s,
                ceilings=self._ceilings,
            )
        )
        self._look = False
        for row in rows:
            self._accept(row)

    def _accept(self, row: queries.Row) -> None:
        row_id, queue, _message_id, body, deliveries, redelivered, token = row
        self._held.add((row_id, token))
        raw, count, flag, problem = _checked(body, deliveries, redelivered)
        self._ready.append(
            Delivery(
                queue=queue,
                body=raw,
                delivery_count=count,
                redelivered=flag,
                handle=Handle(self, row_id, token),
                malformed=problem,
            )
        )

    async def _idle(self, remaining_s: float) -> None:
        """Sleep until a local publish, a due time, or the next poll; then see what changed."""
        wait_s = min(remaining_s, self._poll_s)
        if self._wake_at is not None:
            wait_s = min(wait_s, max(0.0, self._wake_at - time.time()))
        changed = self._changed()
        if changed is not self._seen:  # a local publish since the last look
            self._look = True
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), wait_s)
        if changed.is_set():
            self._look = True
            return
        version = await self.io.run(queries.data_version, write=False)
        if version != self._version:  # another process committed something
            self._version = version
            self._look = True

    async def _wait_for_slot(self, timeout_s: float) -> None:
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_freed.wait(), timeout_s)

    # -- stopping ----------------------------------------------------------

    async def _hand_back(self, handles: Sequence[Handle], *, counted: bool) -> None:
        try:
            await self.io.run(
                functools.partial(
                    queries.move_back,
                    held=[h.held for h in handles],
                    now=time.time(),
                    counted=counted,
                )
            )
        finally:
            for handle in handles:
                self.forget(handle)

    async def cancel(self) -> None:
        self._receiving = False
        self._slot_freed.set()
        unread = [d.handle for d in self._ready if isinstance(d.handle, Handle)]
        self._ready.clear()
        if unread:
            # Read ahead, never handed to the worker: back at once, not counted.
            await self._hand_back(unread, counted=False)

    async def close(self) -> None:
        if self.closed:
            return
        try:
            await self.cancel()
        finally:
            # From here a settle of one of ours is stale: what is still held goes
            # back counted, as a closed AMQP channel's deliveries do.
            self.closed = True
            held = [Handle(self, row_id, token) for row_id, token in sorted(self._held)]
            try:
                if held:
                    await self._hand_back(held, counted=True)
            finally:
                self._held.clear()
                self._on_close(self)


def _checked(
    body: object, deliveries: object, redelivered: object
) -> tuple[bytes, int, bool, str | None]:
    """A row's values, every one checked: any process with the file open may have
    written it (SQLite stores whatever type it is given)."""
    problems = []
    if isinstance(body, bytes):
        raw = body
    else:
        problems.append(f"body is {type(body).__name__}, not bytes")
        raw = repr(body).encode()
    if type(deliveries) is int and 1 <= deliveries <= MAX_DELIVERY_COUNT:
        count = deliveries
    else:
        problems.append(f"deliveries={deliveries!r:.40} is not a count in 1..{MAX_DELIVERY_COUNT}")
        count = 1
    if redelivered not in (0, 1):
        problems.append(f"redelivered={redelivered!r:.40} is not 0 or 1")
    return raw, count, redelivered == 1, "sqlite row: " + "; ".join(problems) if problems else None
