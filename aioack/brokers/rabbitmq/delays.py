"""Delays on RabbitMQ: binary delay levels that never expire.

A message delayed by ``d`` milliseconds passes through one level queue per
set bit of ``d``, highest first. Level ``k`` of work queue ``q`` is the queue
``q.delay.L<k>`` with ``x-message-ttl`` = 2^k ms: every message in it has the
same TTL, so its head always expires first, and on expiry RabbitMQ
dead-letters it to the shared topic exchange of the level below. The
routing key carries the bits and the work queue (``b31.b30...b0.q``), so
each exchange sends it on to the next set bit's level queue of ``q``, or
down the chain to the "deliver" exchange, which routes it into ``q``.

Nothing here has an expiry timer: a level queue lives until ``delete()``,
so no housekeeping can drop a message it holds. (The buckets this replaces
were quorum queues with ``x-expires``; RabbitMQ 3.10 does not reset a
quorum queue's expiry on a re-declare, so buckets were deleted with
messages in them.) Publishing goes straight to the exchange of the
highest set bit: through the whole chain it costs about 70 us per
exchange-to-exchange hop (421 msg/s against 5,800 msg/s, measured).

With at-least-once dead-lettering (quorum queues) a message that finds no
route is kept, but retried only every 180 s and it holds up the messages
behind it: so every level a message will pass through is declared and
bound before it is published (``DelayLevels.route``), never after.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aioack.brokers.rabbitmq.options import RabbitMQOptions
from aioack.errors import ConfigurationError, PublishFailed

#: Bits of a delay in milliseconds: AMQP's longest TTL is 2^32 - 1 ms.
LEVELS = 32
MAX_DELAY_MS = 2**LEVELS - 1
MAX_DELAY_S = MAX_DELAY_MS / 1000.0
#: The exchange the last hop goes through; it routes a message into its queue.
DELIVER = "aioack.delay.deliver"
#: Where "deliver" sends a message whose work queue was deleted meanwhile.
UNROUTABLE = "aioack.delay.unroutable"
#: A routing key holds 32 bit words (64 bytes) and the queue name: 255 bytes at most.
MAX_QUEUE_NAME_BYTES = 255 - 2 * LEVELS
#: How often (seconds) stats() looks for levels other processes created.
PROBE_INTERVAL_S = 1.0


def delay_ms(delay_s: float) -> int:
    """Whole milliseconds, rounded up so a delay is never shortened (at least 1).

    Raises:
        PublishFailed: past AMQP's TTL limit (about 49.7 days).
    """
    ms = max(1, math.ceil(delay_s * 1000.0 - 1e-6))
    if ms > MAX_DELAY_MS:
        raise PublishFailed(f"delay {delay_s:.0f}s is over RabbitMQ's TTL limit (~49 days)")
    return ms


def levels_of(ms: int) -> list[int]:
    """The levels a delay of ``ms`` passes through, highest first."""
    return [k for k in range(LEVELS - 1, -1, -1) if ms >> k & 1]


def level_exchange(k: int) -> str:
    return DELIVER if k < 0 else f"aioack.delay.L{k:02d}"


def level_queue(queue: str, k: int) -> str:
    return f"{queue}.delay.L{k:02d}"


def routing_key(queue: str, ms: int) -> str:
    return ".".join("1" if ms >> k & 1 else "0" for k in range(LEVELS - 1, -1, -1)) + "." + queue


def _bits_pattern(k: int | None, bit: str) -> list[str]:
    words = ["*"] * LEVELS
    if k is not None:
        words[LEVELS - 1 - k] = bit
    return words


def level_binding(queue: str, k: int) -> str:
    """Exchange k -> level k of ``queue``: bit k set, and exactly this queue's name."""
    return ".".join([*_bits_pattern(k, "1"), queue])


def chain_binding(k: int) -> str:
    """Exchange k -> exchange k - 1: bit k clear, any queue."""
    return ".".join([*_bits_pattern(k, "0"), "#"])


def deliver_binding(queue: str) -> str:
    """ "deliver" -> ``queue``: any bits, exactly this queue's name."""
    return ".".join([*_bits_pattern(None, ""), queue])


def level_queue_args(options: RabbitMQOptions, k: int) -> dict[str, Any]:
    args: dict[str, Any] = {
        "x-queue-type": options.queue_type,
        "x-message-ttl": 2**k,
        # No x-dead-letter-routing-key: the message keeps its own (the bits).
        "x-dead-letter-exchange": level_exchange(k - 1),
    }
    if options.queue_type == "quorum":
        # at-least-once: kept until the next hop confirmed it; never dropped.
        args |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    return args


#: Ready counts of queues by name (0 for a missing queue).
Count = Callable[[Sequence[str]], Awaitable[dict[str, int]]]


class DelayLevels:
    """Declares (once per process) what a delayed message will pass through, and counts it."""

    def __init__(self, options: RabbitMQOptions) -> None:
        self._options = options
        self._shared_ready = False
        #: Work queues whose last hop ("deliver" -> queue) is bound.
        self._delivering: set[str] = set()
        #: queue -> levels known to exist (declared here, or found with messages)
        self._levels: dict[str, set[int]] = {}
        self._probed_at: dict[str, float] = {}

    def needs_declaring(self, queue: str, ms: int) -> bool:
        """Whether ``route`` has topology to declare first (else no channel is needed)."""
        known = self._levels.get(queue, set())
        return queue not in self._delivering or not known.issuperset(levels_of(ms))

    def route(self, queue: str, ms: int) -> tuple[str, str]:
        """(exchange, routing key) for a message to ``queue`` delayed by ``ms``."""
        return level_exchange(levels_of(ms)[0]), routing_key(queue, ms)

    async def declare(self, channel: Any, queue: str, ms: int) -> None:
        """Declare every level on the path of a delay of ``ms``, and the last hop.

        Raises:
            ConfigurationError: the queue name is too long for a routing key.
            The client's error when ``queue`` does not exist (binding to it fails).
        """
        if len(queue.encode()) > MAX_QUEUE_NAME_BYTES:
            raise ConfigurationError(
                f"queue {queue!r} is over {MAX_QUEUE_NAME_BYTES} bytes: RabbitMQ delays "
                "carry it in a routing key; use a shorter queue name"
            )
        if queue not in self._delivering:
            await self.attach(channel, queue)
        known = self._levels.setdefault(queue, set())
        for k in levels_of(ms):
            if k not in known:
                name = level_queue(queue, k)
                args = level_queue_args(self._options, k)
                await channel.queue_declare(name, durable=True, arguments=args)
                binding = level_binding(queue, k)
                await channel.queue_bind(name, level_exchange(k), routing_key=binding)
                known.add(k)

    async def attach(self, channel: Any, queue: str) -> None:
        """Bind the last hop into ``queue`` (declared already); the shared part once.

        Called by every ``declare()`` too: a queue deleted and declared again
        (by any process) gets its binding back there.

        Raises:
            The client's error (NOT_FOUND) when ``queue`` does not exist.
        """
        if not self._shared_ready:
            await self._declare_shared(channel)
        await channel.queue_bind(queue, DELIVER, routing_key=deliver_binding(queue))
        self._delivering.add(queue)

    async def _declare_shared(self, channel: Any) -> None:
        """The exchanges all queues share, and the exchange-to-exchange chain. Idempotent."""
        await channel.exchange_declare(UNROUTABLE, exchange_type="fanout", durable=True)
        quorum = {"x-queue-type": "quorum"}
        await channel.queue_declare(UNROUTABLE, durable=True, arguments=quorum)
        await channel.queue_bind(UNROUTABLE, UNROUTABLE, routing_key="")
        await channel.exchange_declare(
            DELIVER,
            exchange_type="topic",
            durable=True,
            arguments={"alternate-exchange": UNROUTABLE},
        )
        for k in range(LEVELS):
            await channel.exchange_declare(level_exchange(k), exchange_type="topic", durable=True)
            await channel.exchange_bind(
                level_exchange(k - 1), level_exchange(k), routing_key=chain_binding(k)
            )
        self._shared_ready = True

    async def delayed(self, count: Count, queue: str) -> int:
        """Messages of ``queue`` held in its levels, by every process.

        Levels this process knows are counted every time; the others (made by
        other processes) are looked for at most every PROBE_INTERVAL_S.
        """
        known = self._levels.setdefault(queue, set())
        now = time.monotonic()
        probe = now - self._probed_at.get(queue, -PROBE_INTERVAL_S) >= PROBE_INTERVAL_S
        levels = range(LEVELS) if probe else sorted(known)
        if probe:
            self._probed_at[queue] = now
        counts = await count([level_queue(queue, k) for k in levels])
        known.update(k for k in levels if counts[level_queue(queue, k)] > 0)
        return sum(counts.values())

    def forget(self, queue: str) -> list[str]:
        """Every level queue name ``queue`` may have, forgotten here (for delete)."""
        self._levels.pop(queue, None)
        self._probed_at.pop(queue, None)
        return [level_queue(queue, k) for k in range(LEVELS)]
