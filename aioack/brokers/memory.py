"""MemoryBroker: an in-process broker with the semantics of a real one.

It is the test vehicle and the embedded default. It is faithful where it
matters to the ack contract: a consumer never holds more than ``prefetch``
unsettled deliveries; deliveries left unsettled when their consumer closes
come back redelivered with their delivery count raised; delays are held by
the broker; each queue has a dead-letter store. It keeps nothing on disk: a
process exit loses what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict

from aioack.brokers.base import (
    Broker,
    Consumer,
    DeadLetter,
    Delivery,
    LetterPass,
    QueueStats,
    WorkerRecord,
    wait_out,
)
from aioack.brokers.deadletters import time_to_store
from aioack.errors import BrokerUnavailable, QueueFull, ReplayStopped, StaleDelivery
from aioack.urls import parse_options

logger = logging.getLogger("aioack.brokers.memory")


class _NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(slots=True, eq=False)
class _Entry:
    queue: str
    body: bytes
    message_id: str
    #: Deliveries counted so far (release() does not count).
    deliveries: int = 0
    redelivered: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class _Handle:
    consumer: _MemoryConsumer
    entry: _Entry


class MemoryBroker(Broker):
    """In-process broker. ``clock`` (seconds, monotonic) is injectable for delay tests."""

    lease_check_interval_s = 0.5

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ready: dict[str, deque[_Entry]] = {}
        self._delayed: list[tuple[float, int, _Entry]] = []
        self._dead: dict[str, list[DeadLetter]] = {}
        self._consumers: set[_MemoryConsumer] = set()
        self._seq = itertools.count()
        self._letter_ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._open = False
        #: worker id -> (its record, monotonic time it ages out)
        self._workers: dict[str, tuple[WorkerRecord, float]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryBroker:
        """``memory://`` takes no options; any option is refused, not ignored."""
        parse_options(url, options, _NoOptions, what="memory broker")
        return cls()

    @property
    def location(self) -> str:
        return "memory:// (inside this process only)"

    # -- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        self._open = True

    async def aclose(self) -> None:
        for consumer in list(self._consumers):
            await consumer.close()
        self._open = False
        left = sum(len(q) for q in self._ready.values()) + len(self._delayed)
        if left:
            # Nothing outlives this process here: say so rather than exit quietly.
            logger.warning(
                "memory broker closed holding %d messages: they are lost (memory:// keeps "
                "nothing; use sqlite://, redis:// or amqp:// to keep them)",
                left,
            )

    async def declare(self, queues: Sequence[str]) -> None:
        self._check_open()
        for queue in queues:
            self._ready.setdefault(queue, deque())
            self._dead.setdefault(queue, [])

    async def delete(self, queues: Sequence[str]) -> None:
        for queue in queues:
            self._ready.pop(queue, None)
            self._dead.pop(queue, None)
        self._delayed = [d for d in self._delayed if d[2].queue not in queues]
        heapq.heapify(self._delayed)

    # -- producing ---------------------------------------------------------

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, delay_s: float = 0.0
    ) -> None:
        self._check_open()
        self._check_room(queue, 1)
        self._put(_Entry(queue, body, message_id), delay_s)

    async def publish_many(self, queue: str, items: Sequence[tuple[str, bytes]]) -> None:
        self._check_open()
        self._check_room(queue, len(items))  # all or none
        for message_id, body in items:
            self._put(_Entry(queue, body, message_id), 0.0)

    def _check_room(self, queue: str, adding: int) -> None:
        """QueueFull unless ``queue`` can take ``adding`` more waiting messages.
        (One event loop, no await before the add: the check and the add are atomic.)"""
        room = self._room(queue)
        if room is not None and adding > room:
            raise QueueFull(queue, self.max_length(queue))

    def _room(self, queue: str) -> int | None:
        """How many more waiting messages ``queue`` takes; None: no bound."""
        max_length = self.max_length(queue)
        if max_length is None:
            return None
        waiting = len(self._ready.get(queue, ())) + sum(
            1 for _, _, e in self._delayed if e.queue == queue
        )
        return max_length - waiting

    def _put(self, entry: _Entry, delay_s: float, *, front: bool = False) -> None:
        if delay_s > 0:
            heapq.heappush(self._delayed, (self._clock() + delay_s, next(self._seq), entry))
        elif front:
            self._ready.setdefault(entry.queue, deque()).appendleft(entry)
        else:
            self._ready.setdefault(entry.queue, deque()).append(entry)
        self._notify()

    def _promote_due(self) -> float | None:
        """Move due delayed entries to their queues; return seconds to the next one."""
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, entry = heapq.heappop(self._delayed)
            self._ready.setdefault(entry.queue, deque()).append(entry)
        return self._delayed[0][0] - now if self._delayed else None

    # -- consuming ---------------------------------------------------------

    async def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        self._check_open()
        if prefetch < 1:
            raise ValueError("prefetch must be >= 1")
        await self.declare(queues)
        consumer = _MemoryConsumer(self, tuple(queues), prefetch)
        self._consumers.add(consumer)
        return consumer

    def _take(self, queues: Sequence[str]) -> _Entry | None:
        for queue in queues:
            ready = self._ready.get(queue)
            if ready and not self._at_unacked_ceiling(queue):
                return ready.popleft()
        return None

    def _at_unacked_ceiling(self, queue: str) -> bool:
        ceiling = self.max_unacked(queue)
        return ceiling is not None and sum(c.held_on(queue) for c in self._consumers) >= ceiling

    async def _wait_change(self, timeout_s: float) -> None:
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(timeout_s, 0.0))

    def _notify(self) -> None:
        # A fresh event per change: every waiter wakes once, none misses one.
        self._changed.set()
        self._changed = asyncio.Event()

    # -- settling ----------------------------------------------------------

    def _settle(self, delivery: Delivery) -> _Entry:
        handle = delivery.handle
        if not isinstance(handle, _Handle) or not handle.consumer.drop(handle.entry):
            raise StaleDelivery(f"delivery on {delivery.queue!r} is no longer held here")
        self._notify()
        return handle.entry

    async def ack(self, delivery: Delivery) -> None:
        self._settle(delivery)

    async def requeue(self, delivery: Delivery) -> None:
        entry = self._settle(delivery)
        entry.redelivered = True
        self._put(entry, 0.0, front=True)

    async def release(self, delivery: Delivery) -> None:
        entry = self._settle(delivery)
        entry.deliveries -= 1  # never started: not an attempt
        self._put(entry, 0.0, front=True)

    async def retry(self, delivery: Delivery, body: bytes, *, delay_s: float) -> None:
        entry = self._settle(delivery)
        self._put(_Entry(entry.queue, body, entry.message_id), delay_s)

    async def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        self._settle(delivery)
        self._store_letter(letter)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        self._check_open()
        self._store_letter(letter)

    def _store_letter(self, letter: DeadLetter) -> None:
        stored = replace(
            letter,
            id=str(next(self._letter_ids)),
            dead_lettered_at=time_to_store(letter.dead_lettered_at),
        )
        self._dead.setdefault(letter.queue, []).append(stored)

    async def extend(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return [d for d in deliveries if not _is_held(d)]

    # -- workers and queues ------------------------------------------------

    async def announce(self, record: WorkerRecord, ttl_s: float) -> None:
        self._workers[record.worker_id] = (record, self._clock() + ttl_s)

    async def retire(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def workers(self) -> list[WorkerRecord] | None:
        now = self._clock()
        return [record for record, until in self._workers.values() if until > now]

    async def queues(self) -> list[str] | None:
        return sorted(set(self._ready) | set(self._dead))

    # -- inspection --------------------------------------------------------

    async def has_queue(self, queue: str) -> bool:
        return queue in self._ready or queue in self._dead

    async def _letter_pass(self, queue: str, batch_size: int) -> LetterPass:
        return _MemoryLetterPass(self, queue, batch_size)

    async def stats(self, queue: str) -> QueueStats:
        self._promote_due()
        return QueueStats(
            ready=len(self._ready.get(queue, ())),
            delayed=sum(1 for _, _, e in self._delayed if e.queue == queue),
            unacked=sum(c.held_on(queue) for c in self._consumers),
            dead=len(self._dead.get(queue, ())),
        )

    def _check_open(self) -> None:
        if not self._open:
            raise BrokerUnavailable("memory broker is not connected; call connect() first")


class _MemoryLetterPass(LetterPass):
    """A pass over a snapshot of the queue's letters, taken when it begins."""

    def __init__(self, broker: MemoryBroker, queue: str, batch_size: int) -> None:
        self._broker = broker
        self._queue = queue
        self._left = deque(broker._dead.get(queue, ()))
        self._batch_size = batch_size

    async def next_batch(self) -> list[DeadLetter]:
        self._broker._check_open()
        count = min(self._batch_size, len(self._left))
        return [self._left.popleft() for _ in range(count)]

    def _take(self, letters: Sequence[DeadLetter]) -> set[int]:
        """Remove these letters (these very objects) from the store; the ``id()`` s of
        those still there (another pass may have taken some)."""
        wanted = {id(letter) for letter in letters}
        stored = self._broker._dead.get(self._queue, [])
        taken = {id(letter) for letter in stored if id(letter) in wanted}
        stored[:] = [letter for letter in stored if id(letter) not in taken]
        return taken

    async def replay(self, copies: Sequence[tuple[DeadLetter, str, bytes]]) -> int:
        # No await from the room check to the last add: one step, as in publish().
        broker = self._broker
        broker._check_open()
        stored = {id(letter) for letter in broker._dead.get(self._queue, ())}
        wanted = [copy for copy in copies if id(copy[0]) in stored]  # another pass took the rest
        room = broker._room(self._queue)
        moving = wanted if room is None else wanted[: max(room, 0)]
        self._take([letter for letter, _, _ in moving])
        for _, message_id, body in moving:
            broker._put(_Entry(self._queue, body, message_id), 0.0)
        if len(moving) < len(wanted):
            raise ReplayStopped(self._queue, broker.max_length(self._queue), replayed=len(moving))
        return len(moving)

    async def remove(self, letters: Sequence[DeadLetter]) -> int:
        self._broker._check_open()
        return len(self._take(letters))


def _is_held(delivery: Delivery) -> bool:
    handle = delivery.handle
    return isinstance(handle, _Handle) and handle.consumer.holds(handle.entry)


class _MemoryConsumer(Consumer):
    def __init__(self, broker: MemoryBroker, queues: tuple[str, ...], prefetch: int) -> None:
        self._broker = broker
        self._queues = queues
        self._prefetch = prefetch
        self._held: dict[int, _Entry] = {}
        self._receiving = True

    async def get(self, timeout_s: float) -> Delivery | None:
        broker = self._broker
        deadline = time.monotonic() + timeout_s
        while self._receiving:
            next_due_s = broker._promote_due()
            if len(self._held) < self._prefetch:
                entry = broker._take(self._queues)
                if entry is not None:
                    return self._deliver(entry)
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return None
            wait_s = remaining_s if next_due_s is None else min(remaining_s, next_due_s)
            await broker._wait_change(wait_s)
        await wait_out(deadline)
        return None

    def _deliver(self, entry: _Entry) -> Delivery:
        entry.deliveries += 1
        self._held[id(entry)] = entry
        return Delivery(
            queue=entry.queue,
            body=entry.body,
            delivery_count=entry.deliveries,
            redelivered=entry.redelivered,
            handle=_Handle(self, entry),
        )

    def drop(self, entry: _Entry) -> bool:
        return self._held.pop(id(entry), None) is not None

    def holds(self, entry: _Entry) -> bool:
        return self._held.get(id(entry)) is entry

    def held_on(self, queue: str) -> int:
        return sum(1 for e in self._held.values() if e.queue == queue)

    async def cancel(self) -> None:
        self._receiving = False
        self._broker._notify()

    async def close(self) -> None:
        await self.cancel()
        # Like a closed AMQP channel: what was never settled comes back, redelivered.
        for entry in reversed(list(self._held.values())):
            entry.redelivered = True
            self._broker._put(entry, 0.0, front=True)
        self._held.clear()
        self._broker._consumers.discard(self)
