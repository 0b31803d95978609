"""The Redis consumer: one named consumer of each queue's consumer group.

A consumer holds at most ``prefetch`` entries in its pending-entries list:
those handed to the worker and not yet settled, plus those read in bulk and
not yet handed out (``_ready``). It reads ``COUNT = prefetch - held`` and so
never holds more. While it polls it also does the queue's housekeeping, so no
separate scheduler process is needed: it moves due delayed messages to the
stream and reclaims entries whose lease ran out (``XAUTOCLAIM``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors

from aioack._cancel import raise_swallowed_cancel
from aioack.brokers.base import MAX_DELIVERY_COUNT, Consumer, Delivery, wait_out
from aioack.brokers.redis.client import Call, RedisIO
from aioack.brokers.redis.errors import translate_errors
from aioack.errors import BrokerError

logger = logging.getLogger("aioack.brokers.redis")

#: Delayed messages moved per queue per poll; more wait for the next poll.
PROMOTE_BATCH = 200

#: An idle time no consumer reaches: "remove only the named consumer".
_NEVER_MS = 10**15

_MESSAGE_FIELDS = frozenset({b"body", b"id", b"dc"})


@dataclass(frozen=True, slots=True)
class Timings:
    """The consumer's clock settings, all in seconds."""

    visibility_timeout_s: float
    #: Longest single blocking read; bounds how late a due delay is moved.
    poll_interval_s: float
    reclaim_interval_s: float
    #: A read-ahead entry handed out later than this is renewed first.
    renew_after_s: float
    #: Consumers of crashed workers, idle this long and holding nothing, are removed.
    forget_idle_s: float


@dataclass(frozen=True, slots=True, eq=False)
class Handle:
    consumer: RedisConsumer
    entry_id: bytes


def consumer_name() -> str:
    """Unique per consumer, readable in XINFO: host, pid, and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Entry:
    """A raw stream entry read as a message, every field checked."""

    body: bytes
    #: Deliveries counted before this copy was added (the ``dc`` field).
    carried: int
    #: Why the entry is not an aioack message, or None.
    malformed: str | None = None


def parse_entry(flat: Sequence[bytes]) -> Entry:
    """Read a raw stream entry: ``body`` [+ ``id``] [+ ``dc``], nothing else.

    An entry of any other shape (added by hand, by another tool) still becomes
    a delivery, marked malformed, so the worker dead-letters it with the
    reason instead of choking on it. Its body is then a lossless rendering of
    all its fields (repr of bytes), kept in the dead letter.
    """
    names, values = list(flat[0::2]), list(flat[1::2])
    fields = dict(zip(names, values, strict=True))
    raw_dc = fields.get(b"dc")
    carried = _count(raw_dc)
    problem = None
    if b"body" not in fields:
        problem = "no body field"
    elif len(fields) != len(names):
        problem = "a field appears twice"
    elif not fields.keys() <= _MESSAGE_FIELDS:
        problem = f"unknown fields {sorted(fields.keys() - _MESSAGE_FIELDS)!r}"
    elif raw_dc is not None and carried is None:
        problem = f"field dc={raw_dc[:40]!r} is not a count in 0..{MAX_DELIVERY_COUNT}"
    if problem is None:
        return Entry(fields[b"body"], carried or 0)
    rendered = ", ".join(f"{name!r}: {value!r}" for name, value in zip(names, values, strict=True))
    body = f"redis stream entry that is not an aioack message: {{{rendered}}}".encode()
    return Entry(body, carried or 0, f"redis stream entry: {problem}")


def unpack_bodies(packed: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(entry id, body) from FETCH's packed form: ``<id> <length> <body>`` repeated.

    Written by our own script, yet read as if it were not: a piece that does
    not parse raises instead of yielding a wrong body.

    Raises:
        BrokerError: the reply is not in that form.
    """
    pos, end = 0, len(packed)
    while pos < end:
        id_end = packed.find(b" ", pos)
        size_end = packed.find(b" ", id_end + 1) if id_end > pos else -1
        size = packed[id_end + 1 : size_end]
        # Lengths as the script writes them (digits, no leading zero), never past the end.
        well_formed = size.isdigit() and (size == b"0" or not size.startswith(b"0"))
        if size_end < 0 or not well_formed or int(size) > end - size_end - 1:
            raise BrokerError(f"redis: unreadable FETCH reply at byte {pos} of {end}")
        entry_id, start = packed[pos:id_end], size_end + 1
        pos = start + int(size)
        yield entry_id, packed[start:pos]


def _count(raw: bytes | None) -> int | None:
    """A count written by aioack: ASCII digits, at most MAX_DELIVERY_COUNT."""
    if raw is None or not raw.isdigit() or len(raw) > len(str(MAX_DELIVERY_COUNT)):
        return None
    value = int(raw)
    return value if value <= MAX_DELIVERY_COUNT else None


class RedisConsumer(Consumer):
    def __init__(
        self,
        io: RedisIO,
        queues: Sequence[str],
        prefetch: int,
        timings: Timings,
        on_close: Callable[[RedisConsumer], None],
        acks_in_flight: Callable[[], Awaitable[None]],
        *,
        ceilings: Mapping[str, int] | None = None,
    ) -> None:
        self.name = consumer_name()
        #: FETCH's ceiling argument per queue (max_unacked; 0: none), or () for none.
        self._ceilings: tuple[int, ...] = (
            tuple((ceilings or {}).get(q, 0) for q in queues) if ceilings else ()
        )
        self.io = io
        self._queues = tuple(queues)
        self._streams = {io.keys(q).stream: q for q in self._queues}
        self._prefetch = prefetch
        self._t = timings
        self._on_close = on_close
        self._acks_in_flight = acks_in_flight
        #: (queue, entry id) of every entry this consumer holds in the PEL.
        self._held: set[tuple[str, bytes]] = set()
        #: Read ahead, not yet handed out: (delivery, monotonic time read or renewed).
        self._ready: deque[tuple[Delivery, float]] = deque()
        self._slot_freed = asyncio.Event()
        self._receiving = True
        self.closed = False
        now = time.monotonic()
        self._promote_at = now
        self._reclaim_at = now
        self._forget_at = now + timings.forget_idle_s / 10
        self._cursors: dict[str, bytes | str] = dict.fromkeys(self._queues, "0-0")

    # -- held entries, shared with the broker's settle methods -------------

    def holds(self, queue: str, entry_id: bytes) -> bool:
        return (queue, entry_id) in self._held

    def forget(self, queue: str, entry_id: bytes) -> None:
        self._held.discard((queue, entry_id))
        self._slot_freed.set()

    # -- receiving ---------------------------------------------------------

    async def get(self, timeout_s: float) -> Delivery | None:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        polled = False
        while self._receiving:
            if self._ready:
                delivery = await self._hand_out()
                if delivery is not None:
                    return delivery
                continue
            remaining_s = deadline - time.monotonic()
            if polled and remaining_s <= 0:
                return None
            free = self._prefetch - len(self._held)
            if 0 <= free < self._prefetch // 2:
                # Acks on their way would free more slots: let them land, then
                # read one big batch instead of many small ones.
                await self._acks_in_flight()
                free = self._prefetch - len(self._held)
            if free <= 0:
                if remaining_s <= 0:
                    return None
                await self._wait_for_slot(remaining_s)
                continue
            polled = True
            with translate_errors("get"):
                await self._housekeep(free)
                if not self._ready:
                    await self._read(free, self._block_s(remaining_s))
            raise_swallowed_cancel()  # see aioack._cancel
        await wait_out(deadline)
        return None

    async def _wait_for_slot(self, timeout_s: float) -> None:
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_freed.wait(), timeout_s)

    def _block_s(self, remaining_s: float) -> float:
        until_promote_s = self._promote_at - time.monotonic()
        return max(0.0, min(remaining_s, self._t.poll_interval_s, until_promote_s))

    async def _hand_out(self) -> Delivery | None:
        delivery, read_at = self._ready.popleft()
        if time.monotonic() - read_at < self._t.renew_after_s:
            return delivery
        # It waited in the read-ahead buffer long enough that its lease may be
        # short: renew it (or learn it was reclaimed) before the worker starts it.
        handle = delivery.handle
        assert isinstance(handle, Handle)
        try:
            with translate_errors("renew"):
                [held] = await self.io.eval(
                    "extend",
                    [self.io.keys(delivery.queue).stream],
                    [self.io.group, self.name, 1, handle.entry_id],
                )
        except BaseException:
            self._ready.appendleft((delivery, read_at))
            raise
        if held:
            return delivery
        self.forget(delivery.queue, handle.entry_id)
        return None

    def _accept(
        self, queue: str, entry_id: bytes, flat: Sequence[bytes], pel_count: int, reclaimed: bool
    ) -> None:
        entry = parse_entry(flat)
        delivery = Delivery(
            queue=queue,
            body=entry.body,
            delivery_count=entry.carried + pel_count,
            redelivered=reclaimed or entry.carried > 0,
            handle=Handle(self, entry_id),
            malformed=entry.malformed,
        )
        self._held.add((queue, entry_id))
        self._ready.append((delivery, time.monotonic()))

    def _accept_body(self, queue: str, entry_id: bytes, body: bytes) -> None:
        """``_accept`` for a first delivery of an entry holding only its body."""
        delivery = Delivery(queue, body, 1, False, Handle(self, entry_id))
        self._held.add((queue, entry_id))
        self._ready.append((delivery, time.monotonic()))

    async def _read(self, free: int, block_s: float) -> None:
        if self._ceilings:
            # A blocking XREADGROUP cannot count the PEL first: read with FETCH,
            # which does, and wait out the block time when nothing came.
            keys = list(self._streams)
            args: list[str | int] = [self.io.group, self.name, free, *self._ceilings]
            replies = await self.io.eval("fetch", keys, args)
            if not replies and block_s > 0:
                await asyncio.sleep(block_s)
        else:
            # FETCH reads the queues in order and returns at most `free` in all,
            # in its compact form (see scripts.FETCH); only when all are empty
            # do we block on every stream at once.
            keys = list(self._streams)
            replies = await self.io.eval("fetch", keys, [self.io.group, self.name, free])
            if not replies and block_s > 0:
                replies = [
                    (stream, [part for entry in entries for part in entry])
                    for stream, entries in await self._xreadgroup(free, block_s)
                ]
        excess: list[tuple[str, bytes]] = []
        for stream, entries in replies:
            queue = self._streams[stream.decode()]
            if isinstance(entries, bytes):  # FETCH's packed form: bodies only
                for entry_id, body in unpack_bodies(entries):
                    if free > 0 and self._receiving:
                        self._accept_body(queue, entry_id, body)
                        free -= 1
                    else:
                        excess.append((queue, entry_id))
                continue
            for i in range(0, len(entries), 2):
                entry_id, flat = entries[i], entries[i + 1]
                if free > 0 and self._receiving:
                    self._accept(queue, entry_id, flat, 1, reclaimed=False)
                    free -= 1
                else:
                    excess.append((queue, entry_id))
        if excess:
            # A blocking read over several streams that found data in more
            # than one at once, or a cancel() that raced the read.
            self._held.update(excess)
            await self._hand_back(excess, uncount=True)

    async def _xreadgroup(self, count: int, block_s: float) -> list[Any]:
        args: list[str | int] = ["GROUP", self.io.group, self.name, "COUNT", count]
        if block_s > 0:
            args += ["BLOCK", max(1, int(block_s * 1000))]  # BLOCK 0 would wait forever
        args += ["STREAMS", *self._streams, *([">"] * len(self._streams))]
        try:
            reply: Any = await self.io.client.execute_command(  # type: ignore[no-untyped-call]
                "XREADGROUP", *args
            )
        except redis_errors.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The group is gone (queue deleted, Redis restarted without
            # persistence): make it again, read on the next turn.
            await self.io.ensure_groups(self._queues)
            return []
        return list(reply or [])

    # -- housekeeping ------------------------------------------------------

    async def _housekeep(self, free: int) -> None:
        now = time.monotonic()
        if now >= self._promote_at:
            await self._promote(now)
        if now >= self._reclaim_at:
            await self._reclaim(now, free)
        if now >= self._forget_at:
            self._forget_at = now + self._t.forget_idle_s / 10
            idle_ms = int(self._t.forget_idle_s * 1000)
            await self.io.eval_many(
                [("forget_consumers", [s], [self.io.group, "", idle_ms]) for s in self._streams]
            )

    async def _promote(self, now: float) -> None:
        calls = [
            ("promote", [k.stream, k.delayed, k.bodies], [PROMOTE_BATCH])
            for k in map(self.io.keys, self._queues)
        ]
        next_s = self._t.poll_interval_s
        for moved, wait_ms in await self.io.eval_many(calls):
            if moved >= PROMOTE_BATCH:
                next_s = 0.0
            elif wait_ms >= 0:
                next_s = min(next_s, wait_ms / 1000)
        self._promote_at = now + next_s

    async def _reclaim(self, now: float, free: int) -> None:
        vt_ms = int(self._t.visibility_timeout_s * 1000)
        found = 0
        for queue in self._queues:
            if free - found <= 0:
                break
            stream = self.io.keys(queue).stream
            cursor, entries = await self.io.eval(
                "reclaim",
                [stream],
                [self.io.group, self.name, vt_ms, self._cursors[queue], free - found],
            )
            self._cursors[queue] = cursor
            for entry_id, flat, pel_count in entries:
                # Ours already: the worker's renewal lapsed but it still holds
                # the delivery; handing it out twice would run it twice.
                if not self.holds(queue, entry_id):
                    self._accept(queue, entry_id, flat, int(pel_count), reclaimed=True)
                    found += 1
        if found:
            logger.warning(
                "redis: consumer %s reclaimed %d entries whose lease ran out", self.name, found
            )
        # Found some: there may be more abandoned work, look again next poll.
        self._reclaim_at = now if found >= free else now + self._t.reclaim_interval_s

    # -- stopping ----------------------------------------------------------

    async def _hand_back(self, entries: Sequence[tuple[str, bytes]], *, uncount: bool) -> None:
        """Requeue (uncount=False) or release (True) entries this consumer holds."""
        flag = 1 if uncount else 0
        calls: list[Call] = [
            ("move_back", [self.io.keys(q).stream], [self.io.group, self.name, entry_id, flag])
            for q, entry_id in entries
        ]
        try:
            with translate_errors("hand back"):
                await self.io.eval_many(calls)
        finally:
            for queue, entry_id in entries:
                self.forget(queue, entry_id)

    async def cancel(self) -> None:
        self._receiving = False
        self._slot_freed.set()
        unread = [
            (d.queue, d.handle.entry_id) for d, _ in self._ready if isinstance(d.handle, Handle)
        ]
        self._ready.clear()
        if unread:
            try:
                await self._hand_back(unread, uncount=True)
            except BrokerError as exc:
                logger.warning(
                    "redis: consumer %s could not hand back %d read-ahead entries (%s); "
                    "they return after the visibility timeout",
                    self.name,
                    len(unread),
                    exc,
                )

    async def close(self) -> None:
        if self.closed:
            return
        await self.cancel()
        # From here on a settle of one of our deliveries is stale: we hand
        # them back, counted as a delivery like a closed AMQP channel does.
        self.closed = True
        held = sorted(self._held)
        try:
            if held:
                await self._hand_back(held, uncount=False)
            with translate_errors("close"):
                await self.io.eval_many(
                    [
                        ("forget_consumers", [s], [self.io.group, self.name, _NEVER_MS])
                        for s in self._streams
                    ]
                )
        except BrokerError as exc:
            logger.warning(
                "redis: consumer %s closed without handing back %d entries (%s); "
                "they return after the visibility timeout",
                self.name,
                len(held),
                exc,
            )
        finally:
            self._held.clear()
            self._on_close(self)
