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
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Self

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
    "Limited",
    "QueueStats",
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
class DeadLetter:
    """A message removed from its queue for good, with why."""

    queue: str
    #: Short, stable cause: malformed, too_large, unknown_task, invalid_arguments,
    #: failed, max_retries, timeout, rejected, delivery_limit, worker_lost, expired,
    #: queue_full.
    reason: str
    body: bytes
    detail: str = ""
    #: ``"ValueError: boom"`` for task failures, else None.
    error: str | None = None
    traceback: str | None = None
    delivery_count: int = 1
    #: The task attempt that failed, when the body could be decoded.
    attempt: int | None = None
    message_id: str | None = None
    dead_lettered_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """How many messages a queue holds, by state."""

    ready: int
    delayed: int
    unacked: int
    dead: int

    @property
    def pending(self) -> int:
        """Messages that still have to run: ready + delayed + unacked."""
        return self.ready + self.delayed + self.unacked


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


class BrokerCore(Limited, ABC):
    """What a worker needs: moving bodies between queues and settling deliveries.

    Every method translates its client library's errors into aioack's tree
    (``raise BrokerUnavailable(...) from exc``); nothing else escapes.
    """

    #: How often (seconds) the AckManager calls ``extend`` on held deliveries.
    lease_check_interval_s: float = 1.0

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
            BrokerUnavailable, ConfigurationError (a queue exists with other settings).
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
            BrokerUnavailable, PublishFailed.
        """

    async def publish_many(self, queue: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish ``(message_id, body)`` pairs; brokers override to batch.

        Raises:
            QueueFull: the queue has no room for them all. SQLite, Redis and
                memory add none then; RabbitMQ decides per message.
            BrokerUnavailable, PublishFailed.
        """
        for message_id, body in items:
            await self.publish(queue, body, message_id=message_id)

    @abstractmethod
    async def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        """Subscribe to ``queues`` with at most ``prefetch`` unsettled deliveries.

        A queue with a ``max_unacked`` (``limits``) hands out nothing more, to
        any consumer, while that many of its deliveries are unsettled.

        Raises:
            BrokerUnavailable.
        """

    @abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """Remove the message for good (it ran, or it is not to run again).

        Raises:
            StaleDelivery (LeaseLost): this consumer no longer owns it.
            BrokerUnavailable.
        """

    @abstractmethod
    async def requeue(self, delivery: Delivery) -> None:
        """Put the message back at once, counted as a delivery (``Reject(requeue=True)``,
        a run cancelled at the shutdown deadline).

        Raises:
            StaleDelivery, BrokerUnavailable.
        """

    @abstractmethod
    async def release(self, delivery: Delivery) -> None:
        """Hand back a delivery that never started (shutdown), for another worker now.

        Brokers that can should not count this as a delivery attempt.

        Raises:
            StaleDelivery, BrokerUnavailable.
        """

    @abstractmethod
    async def retry(self, delivery: Delivery, body: bytes, *, delay_s: float) -> None:
        """Publish ``body`` (the next attempt) after ``delay_s``, then ack ``delivery``.

        Atomic where the broker can; otherwise publish-confirmed first, so a
        crash in between duplicates and never loses. Never refused by a
        ``max_length``: the copy replaces a message the queue holds, so the
        queue does not grow (the same for ``requeue`` and ``release``).

        Raises:
            StaleDelivery, BrokerUnavailable, PublishFailed.
        """

    @abstractmethod
    async def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        """Move the delivery's message to its queue's dead-letter store, with ``letter``.

        Raises:
            StaleDelivery, BrokerUnavailable.
        """

    @abstractmethod
    async def add_dead_letter(self, letter: DeadLetter) -> None:
        """Store ``letter`` in ``letter.queue``'s dead-letter store (early-ack failures).

        Raises:
            BrokerUnavailable.
        """

    @abstractmethod
    async def extend(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew the leases of held deliveries; return those this consumer lost.

        Brokers without leases only report the deliveries that went stale
        (their consumer or channel is gone).

        Raises:
            BrokerUnavailable.
        """

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


class BrokerAdmin(Limited, ABC):
    """Inspecting and administering queues: counts, dead letters, deletion.

    Tools and operators use it; a worker needs it only for ``--burst`` (to
    see that its queues are empty).
    """

    @abstractmethod
    async def stats(self, queue: str) -> QueueStats:
        """Count the queue's messages by state.

        Raises:
            BrokerUnavailable.
        """

    @abstractmethod
    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Read (not remove) up to ``limit`` dead letters of ``queue``, oldest first.

        Raises:
            BrokerUnavailable.
        """

    @abstractmethod
    async def delete(self, queues: Sequence[str]) -> None:
        """Remove queues with their delayed and dead-lettered messages (tests, tooling).

        Raises:
            BrokerUnavailable.
        """


class Broker(BrokerCore, BrokerAdmin):
    """A broker: every broker aioack ships implements both halves."""
