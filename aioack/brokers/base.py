"""The Broker interface: moving bytes and settling deliveries.

A broker knows nothing about tasks, retries or results. It moves opaque bodies
between queues and settles the deliveries the worker holds. The worker's
AckManager decides *what* to do with a delivery; the broker does it, atomically
where the broker can.

Settle methods (ack, requeue, release, retry, dead_letter) are called at most
once per delivery: the AckManager guarantees it, so brokers need not.
"""

from __future__ import annotations

import asyncio
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Self

from aioack.brokers.deadletters import DeadLetter, LetterFilter, replay_copy
from aioack.errors import ConfigurationError, ReplayStopped
from aioack.limits import QueueLimit
from aioack.message import MAX_DELIVERY_COUNT

__all__ = [
    "MAX_DELIVERY_COUNT",
    "Broker",
    "BrokerAdmin",
    "BrokerCore",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "LetterFilter",
    "LetterPass",
    "Limited",
    "QueueStats",
    "WorkerRecord",
    "wait_out",
]


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """One receipt of a message by one consumer.

    ``handle`` is broker-private (a stream entry id and consumer name, or a
    channel generation and delivery tag); only the broker that made the
    delivery may read it.
    """

    queue: str
    body: bytes
    #: 1 on the first delivery; +1 each time the broker hands it out again.
    delivery_count: int
    #: The broker handed this message out before and never saw it settled.
    redelivered: bool
    handle: object
    received_at: float = field(default_factory=time.monotonic)
    #: Set when the broker found this delivery's metadata unusable (a header
    #: or stream field out of range, of the wrong type): the worker
    #: dead-letters it ``malformed`` with this text, without running it.
    malformed: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """How many messages a queue holds, by state."""

    ready: int
    delayed: int
    unacked: int
    dead: int
    #: False when ``unacked`` counts only this process's consumers (RabbitMQ
    #: without its management API): then it is no figure for the whole queue.
    unacked_known: bool = True

    @property
    def pending(self) -> int:
        """Messages that still have to run: ready + delayed + unacked."""
        return self.ready + self.delayed + self.unacked


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """What a live worker says of itself (``aioack inspect`` lists them)."""

    worker_id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    #: Runs going on when the record was written.
    in_flight: int
    #: Unix times: when the worker started, and when it wrote this record.
    started_at: float
    seen_at: float

    def to_json(self) -> dict[str, object]:
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "in_flight": self.in_flight,
            "started_at": self.started_at,
            "seen_at": self.seen_at,
        }

    @classmethod
    def from_json(cls, data: object) -> WorkerRecord | None:
        """A record read back from the broker; None when it is not one (anyone can write)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                worker_id=str(data["worker_id"])[:64],
                host=str(data["host"])[:255],
                pid=int(data["pid"]),
                queues=tuple(str(q)[:200] for q in list(data["queues"])[:100]),
                concurrency=int(data["concurrency"]),
                in_flight=int(data["in_flight"]),
                started_at=_finite(data["started_at"]),
                seen_at=_finite(data["seen_at"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return None


def _finite(value: object) -> float:
    number = float(value)  # type: ignore[arg-type]  # anything else: TypeError, as for a bad record
    if not math.isfinite(number):
        raise ValueError(f"not a time: {number}")
    return number


async def wait_out(deadline: float) -> None:
    """Sleep until ``deadline`` (monotonic seconds).

    A cancelled or closed consumer has nothing to deliver, but ``get()`` still
    waits out its timeout: a caller that polls ``get()`` in a loop must never
    spin and starve the event loop.
    """
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


class Consumer(ABC):
    """A subscription to one or more queues, bounded by ``prefetch``.

    The broker never hands this consumer more than ``prefetch`` unsettled
    deliveries at once; settling a delivery frees its place.
    """

    @abstractmethod
    async def get(self, timeout_s: float) -> Delivery | None:
        """Wait up to ``timeout_s`` for the next delivery; None when none came.

        A cancelled or closed consumer returns None only after ``timeout_s``
        (see ``wait_out``), never at once.

        Raises:
            BrokerUnavailable: the connection is down (the worker retries).
        """

    def watch_losses(self, listener: Callable[[], None]) -> None:  # noqa: B027 (optional)
        """Have ``listener`` called as soon as deliveries this consumer handed out
        may have gone stale (a channel closed), so their runs stop at once.

        Optional: without it the worker finds stale deliveries on its next
        lease check (``Broker.extend``). Brokers whose deliveries only go
        stale by lease expiry have nothing to report early.
        """

    @abstractmethod
    async def cancel(self) -> None:
        """Stop receiving new deliveries. Held ones stay settleable.

        Deliveries the broker had pushed but ``get()`` had not yet returned
        are handed back at once.
        """

    @abstractmethod
    async def close(self) -> None:
        """Cancel, then give every still-unsettled delivery back to the broker."""


class Limited:
    """The queue limits a broker enforces (``aioack.limits``), seen by both halves:
    the core enforces them, the admin side reports them (``inspect``)."""

    #: queue -> its QueueLimit; queues not in it are unbounded.
    limits: Mapping[str, QueueLimit] = MappingProxyType({})

    def use_limits(self, limits: Mapping[str, QueueLimit]) -> None:
        """Enforce ``limits`` from now on (``App(queue_limits=...)`` calls it).

        Call it before publishing or consuming: a consumer takes the limits
        its queues had when it was made, and RabbitMQ declares them.
        A broker that cannot enforce a limit overrides this to refuse it.

        Raises:
            ConfigurationError: a limit this broker cannot enforce (the message says why).
        """
        self.limits = MappingProxyType(dict(limits))

    def max_length(self, queue: str) -> int | None:
        limit = self.limits.get(queue)
        return limit.max_length if limit is not None else None

    def max_unacked(self, queue: str) -> int | None:
        limit = self.limits.get(queue)
        return limit.max_unacked if limit is not None else None

    def unacked_ceilings(self, queues: Sequence[str]) -> dict[str, int]:
        """``queue -> max_unacked`` of those of ``queues`` that have one (for a consumer)."""
        return {q: n for q in queues if (n := self.max_unacked(q)) is not None}


class BrokerCore(Limited, ABC):
    """What a worker needs: moving bodies between queues and settling deliveries.

    Every method translates its client library's errors into aioack's tree
    (``raise BrokerUnavailable(...) from exc``); nothing else escapes.
    """

    #: How often (seconds) the AckManager calls ``extend`` on held deliveries.
    lease_check_interval_s: float = 1.0
    #: ``publish_many`` into a full queue adds every item or none (False: per message).
    batches_all_or_none: bool = True

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from a URL of this broker's scheme; ``options`` override its query.

        Raises:
            ConfigurationError: an unknown option (with the closest known name) or
                a bad value.
        """

    @property
    def location(self) -> str:
        """Where the broker is, for the worker's ready line: a URL, password masked."""
        return type(self).__name__

    @abstractmethod
    async def connect(self) -> None:
        """Open connections. Idempotent.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Close consumers and connections. Idempotent; never raises."""

    @abstractmethod
    async def declare(self, queues: Sequence[str]) -> None:
        """Create the queues (and their delay and dead-letter parts). Idempotent.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
            ConfigurationError: a queue exists with other settings.
        """

    @abstractmethod
    async def publish(
        self, queue: str, body: bytes, *, message_id: str, delay_s: float = 0.0
    ) -> None:
        """Put ``body`` on ``queue``, ready after ``delay_s`` seconds.

        Returns only once the broker holds the message (confirmed, durable as
        configured). A delay is held by the broker, never by a worker.

        A queue with a ``max_length`` (``limits``) takes the message only if
        it holds fewer waiting messages, checked and added in one atomic step.

        Raises:
            QueueFull: the queue is at its ``max_length``; nothing was added.
            BrokerUnavailable: the broker cannot be reached.
            PublishFailed: the broker did not confirm that it holds the message.
        """

    async def publish_many(self, queue: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish ``(message_id, body)`` pairs; brokers override to batch.

        Raises:
            QueueFull: the queue has no room for them all. SQLite, Redis and
                memory add none then; RabbitMQ decides per message.
            BrokerUnavailable: the broker cannot be reached.
            PublishFailed: the broker did not confirm that it holds the message.
        """
        for message_id, body in items:
            await self.publish(queue, body, message_id=message_id)

    @abstractmethod
    async def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        """Subscribe to ``queues`` with at most ``prefetch`` unsettled deliveries.

        A queue with a ``max_unacked`` (``limits``) hands out nothing more, to
        any consumer, while that many of its deliveries are unsettled.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """Remove the message for good (it ran, or it is not to run again).

        Raises:
            StaleDelivery (LeaseLost): this consumer no longer owns it.
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def requeue(self, delivery: Delivery) -> None:
        """Put the message back at once, counted as a delivery (``Reject(requeue=True)``,
        a run cancelled at the shutdown deadline).

        Raises:
            StaleDelivery: this consumer no longer owns the delivery.
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def release(self, delivery: Delivery) -> None:
        """Hand back a delivery that never started (shutdown), for another worker now.

        Brokers that can should not count this as a delivery attempt.

        Raises:
            StaleDelivery: this consumer no longer owns the delivery.
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def retry(self, delivery: Delivery, body: bytes, *, delay_s: float) -> None:
        """Publish ``body`` (the next attempt) after ``delay_s``, then ack ``delivery``.

        Atomic where the broker can; otherwise publish-confirmed first, so a
        crash in between duplicates and never loses. Never refused by a
        ``max_length``: the copy replaces a message the queue holds, so the
        queue does not grow (the same for ``requeue`` and ``release``).

        Raises:
            StaleDelivery: this consumer no longer owns the delivery.
            BrokerUnavailable: the broker cannot be reached.
            PublishFailed: the broker did not confirm that it holds the message.
        """

    @abstractmethod
    async def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        """Move the delivery's message to its queue's dead-letter store, with ``letter``.

        Raises:
            StaleDelivery: this consumer no longer owns the delivery.
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def add_dead_letter(self, letter: DeadLetter) -> None:
        """Store ``letter`` in ``letter.queue``'s dead-letter store (early-ack failures).

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def extend(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew the leases of held deliveries; return those this consumer lost.

        Brokers without leases only report the deliveries that went stale
        (their consumer or channel is gone).

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    async def announce(self, record: WorkerRecord, ttl_s: float) -> None:
        """Say a worker is alive (and how busy) until ``ttl_s`` seconds from now.

        A worker calls it at start and every few seconds; ``retire`` at stop.
        Optional: a broker that keeps no records ignores it.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    async def retire(self, worker_id: str) -> None:
        """The worker stopped: forget its record now (else it ages out)."""

    async def preflight(self, time_limits_s: Mapping[str, float | None]) -> list[str]:
        """Check the broker's settings against the tasks' ``time_limit`` s.

        Returns warnings to log at worker start.

        Raises:
            ConfigurationError: a setting cannot work; the message says what to change.
        """
        return []

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


#: Letters a dead-letter operation reads (and moves) per round trip, by default.
LETTER_BATCH = 100
#: The most a batch may hold: one replay batch is one script or one transaction.
MAX_LETTER_BATCH = 1000

#: ``on_batch(looked_at, acted_on)``: called after each batch of a replay or purge.
Progress = Callable[[int, int], None]


class LetterPass(ABC):
    """One pass over a queue's dead letters, oldest first: what a broker implements
    for the dead-letter operations of ``BrokerAdmin``, which choose, count and
    report. A pass only reads and moves.

    A pass visits the letters its queue held when it began; letters added
    meanwhile may wait for the next pass, so a replay whose tasks fail again
    at once cannot loop for ever.
    """

    @abstractmethod
    async def next_batch(self) -> list[DeadLetter]:
        """The next letters in order, each with its ``id``; [] once the pass is done.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def replay(self, copies: Sequence[tuple[DeadLetter, str, bytes]]) -> int:
        """For each ``(letter, message_id, body)``, the letter from the last batch:
        publish the copy to the letter's queue, ready now, then remove the letter.

        Never loses: the broker holds the copy (confirmed) before the letter is
        removed, or both happen in one atomic step; a crash in between leaves
        a duplicate. A letter removed meanwhile by another pass is skipped
        (with its copy, where the broker can tell). Returns the letters moved.

        A copy is new work, so the queue's ``max_length`` applies to it as to
        a publish, copy by copy, checked atomically with the add, and the
        first copy the queue has no room for stops the batch (RabbitMQ: into
        a limited queue the copies go one at a time, its ``x-max-length``
        deciding). A refused copy's letter, and those after it, stay dead
        letters; every letter whose copy went in is removed; then
        ``ReplayStopped`` says how many moved.

        Raises:
            ReplayStopped: the queue is full; ``replayed`` letters of the batch moved.
            BrokerUnavailable, PublishFailed: the letters whose copies the broker
                confirmed are removed first, where the broker can tell (RabbitMQ).
        """

    @abstractmethod
    async def remove(self, letters: Sequence[DeadLetter]) -> int:
        """Remove these letters (from the last batch) for good; returns how many went.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    async def aclose(self) -> None:  # noqa: B027 (optional)
        """End the pass; letters it read and did not remove stay, in their order."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class BrokerAdmin(Limited, ABC):
    """Inspecting and administering queues: counts, dead letters, deletion.

    Tools and operators use it; a worker needs it only for ``--burst`` (to
    see that its queues are empty). The dead-letter operations are written
    once, here, on one primitive each broker implements: ``_letter_pass``.
    """

    @abstractmethod
    async def stats(self, queue: str) -> QueueStats:
        """Count the queue's messages by state.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def has_queue(self, queue: str) -> bool:
        """Whether the broker knows ``queue``: declared (a worker consumed it), or
        holding a message or a dead letter of it.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def delete(self, queues: Sequence[str]) -> None:
        """Remove queues with their delayed and dead-lettered messages (tests, tooling).

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    @abstractmethod
    async def _letter_pass(self, queue: str, batch_size: int) -> LetterPass:
        """Begin a pass over ``queue``'s dead letters, ``batch_size`` at a time
        (an empty pass when the queue has none, or does not exist).

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

    async def dead_letters(
        self, queue: str, limit: int = 100, *, where: LetterFilter | None = None
    ) -> list[DeadLetter]:
        """Read (not remove) up to ``limit`` dead letters of ``queue``, oldest first;
        only those ``where`` takes, when given.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """
        if limit <= 0:
            return []
        chosen, now = where or LetterFilter(), time.time()
        found: list[DeadLetter] = []
        async with await self._letter_pass(queue, min(limit, LETTER_BATCH)) as letters:
            while len(found) < limit and (batch := await letters.next_batch()):
                found += (letter for letter in batch if chosen.matches(letter, now))
        return found[:limit]

    async def get_dead_letter(self, queue: str, letter_id: str) -> DeadLetter | None:
        """The dead letter of ``queue`` whose ``id`` is ``letter_id``; None when there is none.

        Raises:
            ConfigurationError: ``letter_id`` is empty, over-long or not printable.
            BrokerUnavailable: the broker cannot be reached.
        """
        found = await self.dead_letters(queue, 1, where=LetterFilter(ids=[letter_id]))
        return found[0] if found else None

    async def replay_dead_letters(
        self,
        queue: str,
        where: LetterFilter,
        *,
        limit: int | None = None,
        batch_size: int = LETTER_BATCH,
        on_batch: Progress | None = None,
        dry_run: bool = False,
    ) -> int:
        """Put the letters ``where`` takes (``LetterFilter()``: all) back on ``queue``,
        oldest first, at most ``limit``; returns how many went back (with
        ``dry_run``: how many would, nothing moved).

        Each goes back as a fresh message, ready now: the broker counts its
        deliveries from 1, and its body's ``attempt`` is 1 again (see
        ``deadletters.replay_copy``). Never loses a letter: its copy is held
        by the broker before the letter is removed (or both in one step), so
        a crash in between leaves a duplicate, never a loss.

        Each copy is new work: the queue's ``max_length`` applies to it as to a
        publish (at once, whatever ``when_full`` says; a replay never waits).
        The replay stops at a full queue: ``ReplayStopped`` says how many
        letters went back; the others are still dead letters, with no copy.

        Raises:
            ReplayStopped: the queue filled up (a ``QueueFull``).
            BrokerUnavailable, PublishFailed: the letters moved before it stay moved.
        """

        async def move(letters: LetterPass, chosen: list[DeadLetter]) -> int:
            return await letters.replay([(letter, *replay_copy(letter)) for letter in chosen])

        act = None if dry_run else move
        return await self._each_batch(queue, where, limit, batch_size, on_batch, act)

    async def dead_letter_ids(
        self,
        queue: str,
        where: LetterFilter,
        *,
        limit: int | None = None,
        batch_size: int = LETTER_BATCH,
    ) -> list[str]:
        """The ids of the letters ``where`` takes, oldest first, at most ``limit``:
        what a purge would remove now. Only the ids are kept, never a body, so
        counting 100,000 letters holds a few megabytes. (On RabbitMQ two
        letters may share a derived id: the list then holds it twice.)

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """
        ids: list[str] = []

        async def note(letters: LetterPass, chosen: list[DeadLetter]) -> int:
            ids.extend(letter.id for letter in chosen if letter.id is not None)
            return len(chosen)

        await self._each_batch(queue, where, limit, batch_size, None, note)
        return ids

    async def purge_dead_letters(
        self,
        queue: str,
        where: LetterFilter,
        *,
        limit: int | None = None,
        batch_size: int = LETTER_BATCH,
        on_batch: Progress | None = None,
        dry_run: bool = False,
        only: Container[str] | None = None,
    ) -> int:
        """Remove for good the letters ``where`` takes (``LetterFilter()``: all), at
        most ``limit``; returns how many were removed (with ``dry_run``: how many
        would be, nothing removed).

        ``only``: the ids of the letters a caller counted before (with
        ``dead_letter_ids``), so that what it removes is what someone agreed
        to: a letter dead-lettered since is left. Unlike ``LetterFilter.ids``
        (input, at most ``MAX_VALUES``), it may hold any number of ids.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """

        async def remove(letters: LetterPass, chosen: list[DeadLetter]) -> int:
            return await letters.remove(chosen)

        act = None if dry_run else remove
        return await self._each_batch(queue, where, limit, batch_size, on_batch, act, only)

    async def _each_batch(
        self,
        queue: str,
        where: LetterFilter,
        limit: int | None,
        batch_size: int,
        on_batch: Progress | None,
        act: Callable[[LetterPass, list[DeadLetter]], Awaitable[int]] | None,
        only: Container[str] | None = None,
    ) -> int:
        """One pass: choose from each batch (``where``, and ``only`` the ids in it
        when given), act on the chosen (count them only, when ``act`` is None),
        count and report.

        Raises:
            ReplayStopped: with ``replayed`` counting the whole pass, not its last batch.
        """
        if not 1 <= batch_size <= MAX_LETTER_BATCH:
            raise ConfigurationError(f"batch_size must be 1-{MAX_LETTER_BATCH}, got {batch_size}")
        if limit is not None and limit < 0:
            raise ConfigurationError(f"limit must be >= 0, got {limit}")
        now, looked_at, done = time.time(), 0, 0
        async with await self._letter_pass(queue, batch_size) as letters:
            while limit is None or done < limit:
                batch = await letters.next_batch()
                if not batch:
                    break
                looked_at += len(batch)
                chosen = [
                    letter
                    for letter in batch
                    if where.matches(letter, now) and (only is None or letter.id in only)
                ]
                if limit is not None:
                    chosen = chosen[: limit - done]
                try:
                    if chosen:
                        done += len(chosen) if act is None else await act(letters, chosen)
                except ReplayStopped as stopped:
                    done += stopped.replayed
                    if on_batch is not None:
                        on_batch(looked_at, done)
                    raise ReplayStopped(queue, stopped.max_length, replayed=done) from stopped
                if on_batch is not None:
                    on_batch(looked_at, done)
        return done

    async def queues(self) -> list[str] | None:
        """Every queue the broker knows of; None when it cannot list them.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """
        return None

    async def workers(self) -> list[WorkerRecord] | None:
        """The live workers' records; None when this broker cannot tell (RabbitMQ
        without its management API).

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """
        return None


class Broker(BrokerCore, BrokerAdmin):
    """A broker: every broker aioack ships implements both halves."""
