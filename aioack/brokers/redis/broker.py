"""RedisBroker: Streams, consumer groups, leases renewed by the worker, fenced settles.

- Each queue is a stream with one consumer group; each ``consume()`` is a
  uniquely named consumer of it.
- An entry a consumer holds is leased to it for ``visibility_timeout``
  seconds. The worker renews the lease of every delivery it holds (``extend``,
  every ``lease_check_interval_s`` = a third of the timeout); an entry whose
  lease ran out is reclaimed with ``XAUTOCLAIM`` by whichever consumer polls.
- Every settle and every renewal runs as a Lua script that first checks this
  consumer still owns the entry; a worker that lost its lease gets
  ``LeaseLost`` and changes nothing.
- Delays sit in a sorted set on Redis's clock, moved to the stream atomically
  when due by the consumers' polls; dead letters go to a stream per queue.

See docs/redis.md for the settings, the guarantees and what persistence gives.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import astuple
from typing import Any

from aioack.brokers.base import (
    Broker,
    Consumer,
    DeadLetter,
    Delivery,
    LetterPass,
    QueueStats,
    WorkerRecord,
)
from aioack.brokers.redis.acks import AckBatcher
from aioack.brokers.redis.client import Call, RedisIO
from aioack.brokers.redis.consumer import Handle, RedisConsumer, Timings
from aioack.brokers.redis.errors import translate_errors
from aioack.brokers.redis.keys import queue_of_stream, stream_pattern, worker_key
from aioack.brokers.redis.letters import RedisLetterPass, letter_fields
from aioack.brokers.redis.options import DEFAULT_URL, parse_url
from aioack.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    LeaseLost,
    PublishFailed,
    QueueFull,
    StaleDelivery,
)
from aioack.urls import masked

logger = logging.getLogger("aioack.brokers.redis")

_PUBLISH_CHUNK = 500


class RedisBroker(Broker):
    """Redis Streams broker. ``RedisBroker.from_url("redis://host:6379/0?visibility_timeout=30")``."""

    def __init__(self, url: str = DEFAULT_URL, **options: object) -> None:
        redis_url, self.options = parse_url(url, options)
        self._url = redis_url
        opts = self.options
        vt_s = opts.visibility_timeout
        # Three renewals per lease: one late or lost renewal is not yet a lost lease.
        self.lease_check_interval_s = vt_s / 3
        pool_kwargs: dict[str, Any] = {
            "socket_timeout": opts.socket_timeout,
            "socket_connect_timeout": opts.connect_timeout,
        }
        if opts.max_connections is not None:
            pool_kwargs["max_connections"] = opts.max_connections
        self._io = RedisIO(
            redis_url, prefix=opts.key_prefix, group=opts.group, pool_kwargs=pool_kwargs
        )
        self._acks = AckBatcher(self._io)
        self._consumers: set[RedisConsumer] = set()
        self._timings = Timings(
            visibility_timeout_s=vt_s,
            poll_interval_s=opts.poll_interval,
            reclaim_interval_s=opts.reclaim_interval or vt_s / 3,
            renew_after_s=self.lease_check_interval_s,
            forget_idle_s=max(10 * vt_s, 600.0),
        )

    @property
    def location(self) -> str:
        return masked(self._url)

    @classmethod
    def from_url(cls, url: str, **options: object) -> RedisBroker:
        """Build from ``redis://``, ``rediss://`` or ``unix://``; ``options`` override the query.

        Raises:
            ConfigurationError: an unknown option or a bad value.
        """
        return cls(url, **options)

    # -- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        await self._io.connect()

    async def aclose(self) -> None:
        try:
            for consumer in list(self._consumers):
                await consumer.close()
            await self._acks.drain()
        except Exception as exc:  # aclose never raises: log what was left undone
            logger.warning("redis: error while closing the broker: %r", exc)
        finally:
            await self._io.aclose()

    async def declare(self, queues: Sequence[str]) -> None:
        with translate_errors("declare"):
            await self._io.ensure_groups(queues)

    async def delete(self, queues: Sequence[str]) -> None:
        names = [key for q in queues for key in astuple(self._io.keys(q))]
        if names:
            with translate_errors("delete"):
                await self._io.client.delete(*names)

    # -- producing ---------------------------------------------------------

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, delay_s: float = 0.0
    ) -> None:
        keys = self._io.keys(queue)
        if self.max_length(queue) is not None:
            await self._publish_bounded(queue, [(message_id, body)], delay_s)
            return
        with translate_errors("publish", other=PublishFailed):
            if delay_s > 0:
                await self._io.eval(
                    "publish_delayed",
                    [keys.stream, keys.delayed, keys.bodies],
                    [body, message_id, _ms(delay_s), _token(message_id)],
                )
            else:
                await self._io.client.xadd(keys.stream, {"body": body})

    async def publish_many(self, queue: str, items: Sequence[tuple[str, bytes]]) -> None:
        if self.max_length(queue) is not None:
            # One script: room for all, or none added (not chunked, or a
            # refusal would leave the chunks before it published).
            await self._publish_bounded(queue, items, 0.0)
            return
        stream = self._io.keys(queue).stream
        with translate_errors("publish", other=PublishFailed):
            for start in range(0, len(items), _PUBLISH_CHUNK):
                pipe = self._io.client.pipeline(transaction=False)
                for _, body in items[start : start + _PUBLISH_CHUNK]:  # the id is in the body
                    pipe.xadd(stream, {"body": body})
                await pipe.execute()

    async def _publish_bounded(
        self, queue: str, items: Sequence[tuple[str, bytes]], delay_s: float
    ) -> None:
        """Add ``items`` if ``queue`` has room for all (checked in the same script)."""
        keys, max_length = self._io.keys(queue), self.max_length(queue)
        assert max_length is not None
        args: list[bytes | str | int] = [self._io.group, max_length, _ms(delay_s)]
        for message_id, body in items:
            args += [body, message_id, _token(message_id)]
        with translate_errors("publish", other=PublishFailed):
            added = await self._io.eval(
                "publish_bounded", [keys.stream, keys.delayed, keys.bodies], args
            )
        if not added:
            raise QueueFull(queue, max_length)

    # -- consuming ---------------------------------------------------------

    async def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        if prefetch < 1:
            raise ConfigurationError(f"prefetch must be >= 1, got {prefetch}")
        if not queues:
            raise ConfigurationError("consume() needs at least one queue")
        await self.declare(queues)
        consumer = RedisConsumer(
            self._io,
            queues,
            prefetch,
            self._timings,
            self._consumers.discard,
            self._acks.in_flight,
            ceilings=self.unacked_ceilings(queues),
        )
        self._consumers.add(consumer)
        return consumer

    # -- settling ----------------------------------------------------------

    def _held(self, delivery: Delivery) -> Handle:
        handle = delivery.handle
        if not isinstance(handle, Handle) or handle.consumer.io is not self._io:
            raise StaleDelivery(f"delivery on {delivery.queue!r} was not made by this broker")
        if handle.consumer.closed or not handle.consumer.holds(delivery.queue, handle.entry_id):
            raise StaleDelivery(
                f"entry {handle.entry_id.decode()} on {delivery.queue!r} is no longer held by "
                f"consumer {handle.consumer.name} (closed, or handed back)"
            )
        return handle

    def _lease_lost(self, delivery: Delivery, handle: Handle, action: str) -> LeaseLost:
        logger.warning(
            "redis: lease lost on %s entry %s (consumer %s): not %s, another consumer holds it",
            delivery.queue,
            handle.entry_id.decode(),
            handle.consumer.name,
            action,
        )
        return LeaseLost(
            f"cannot {action} entry {handle.entry_id.decode()} on {delivery.queue!r}: its lease "
            f"ran out and another consumer holds it"
        )

    async def ack(self, delivery: Delivery) -> None:
        handle = self._held(delivery)
        stream = self._io.keys(delivery.queue).stream
        try:
            owned = await self._acks.submit(stream, handle.consumer.name, handle.entry_id)
        finally:
            # Settled at most once: whatever the outcome, the worker lets go of
            # it. Unacked, it stays pending and is reclaimed after the timeout.
            handle.consumer.forget(delivery.queue, handle.entry_id)
        if not owned:
            raise self._lease_lost(delivery, handle, "ack")

    async def _fenced(
        self,
        delivery: Delivery,
        action: str,
        script: str,
        keys: Sequence[str],
        args: Sequence[bytes | str | int | float],
        other: type[BrokerError] = BrokerError,
    ) -> None:
        """Run a settle script that first checks this consumer still owns the entry."""
        handle = self._held(delivery)
        try:
            with translate_errors(action, other=other):
                owned = await self._io.eval(
                    script, keys, [self._io.group, handle.consumer.name, handle.entry_id, *args]
                )
        finally:
            handle.consumer.forget(delivery.queue, handle.entry_id)
        if not owned:
            raise self._lease_lost(delivery, handle, action)

    async def requeue(self, delivery: Delivery) -> None:
        stream = self._io.keys(delivery.queue).stream
        await self._fenced(delivery, "requeue", "move_back", [stream], [0])

    async def release(self, delivery: Delivery) -> None:
        stream = self._io.keys(delivery.queue).stream
        await self._fenced(delivery, "release", "move_back", [stream], [1])

    async def retry(self, delivery: Delivery, body: bytes, *, delay_s: float) -> None:
        keys = self._io.keys(delivery.queue)
        await self._fenced(
            delivery,
            "retry",
            "retry",
            [keys.stream, keys.delayed, keys.bodies],
            [body, _ms(delay_s), uuid.uuid4().hex],
            other=PublishFailed,
        )

    async def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        stream = self._io.keys(delivery.queue).stream
        dead = self._io.keys(letter.queue).dead
        args = [self.options.dead_letter_maxlen, *letter_fields(letter)]
        await self._fenced(delivery, "dead-letter", "dead_letter", [stream, dead], args)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        dead = self._io.keys(letter.queue).dead
        maxlen = self.options.dead_letter_maxlen or None
        flat = letter_fields(letter)
        fields: dict[Any, Any] = dict(zip(flat[0::2], flat[1::2], strict=True))
        with translate_errors("add dead letter"):
            await self._io.client.xadd(dead, fields, maxlen=maxlen, approximate=True)

    async def extend(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        lost: set[int] = set()
        groups: dict[tuple[str, RedisConsumer], list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            handle = delivery.handle
            if (
                not isinstance(handle, Handle)
                or handle.consumer.closed
                or not handle.consumer.holds(delivery.queue, handle.entry_id)
            ):
                lost.add(id(delivery))
            else:
                groups[(delivery.queue, handle.consumer)].append(delivery)
        renew = 1 if self.options.renew_leases else 0
        calls: list[Call] = [
            (
                "extend",
                [self._io.keys(queue).stream],
                [self._io.group, consumer.name, renew, *(_entry_id(d) for d in items)],
            )
            for (queue, consumer), items in groups.items()
        ]
        if calls:
            with translate_errors("extend"):
                results = await self._io.eval_many(calls)
            for ((queue, consumer), items), flags in zip(groups.items(), results, strict=True):
                for delivery, flag in zip(items, flags, strict=True):
                    if not flag:
                        handle = delivery.handle
                        assert isinstance(handle, Handle)
                        self._lease_lost(delivery, handle, "renewed")
                        consumer.forget(queue, handle.entry_id)
                        lost.add(id(delivery))
        return [d for d in deliveries if id(d) in lost]

    # -- workers and queues ------------------------------------------------

    async def announce(self, record: WorkerRecord, ttl_s: float) -> None:
        key = worker_key(self.options.key_prefix, record.worker_id)
        with translate_errors("announce"):
            await self._io.client.set(key, json.dumps(record.to_json()), px=int(ttl_s * 1000))

    async def retire(self, worker_id: str) -> None:
        with translate_errors("retire"):
            await self._io.client.delete(worker_key(self.options.key_prefix, worker_id))

    async def workers(self) -> list[WorkerRecord] | None:
        pattern = worker_key(self.options.key_prefix, "*")
        with translate_errors("workers"):
            keys = [key async for key in self._io.client.scan_iter(match=pattern, count=500)]
            raws = await self._io.client.mget(keys) if keys else []
        records = (WorkerRecord.from_json(_json(raw)) for raw in raws if raw is not None)
        return [record for record in records if record is not None]

    async def queues(self) -> list[str] | None:
        prefix = self.options.key_prefix
        with translate_errors("queues"):
            keys = [key async for key in self._io.client.scan_iter(match=stream_pattern(prefix))]
        names = (queue_of_stream(prefix, k.decode() if isinstance(k, bytes) else k) for k in keys)
        return sorted({name for name in names if name})

    # -- inspection --------------------------------------------------------

    async def has_queue(self, queue: str) -> bool:
        keys = self._io.keys(queue)
        with translate_errors("look up a queue"):
            return int(await self._io.client.exists(keys.stream, keys.dead)) > 0

    async def _letter_pass(self, queue: str, batch_size: int) -> LetterPass:
        return await RedisLetterPass.begin(self._io, queue, batch_size, self.max_length(queue))

    async def stats(self, queue: str) -> QueueStats:
        keys = self._io.keys(queue)
        with translate_errors("stats"):
            length, pending, delayed, dead = await self._io.eval(
                "stats", [keys.stream, keys.delayed, keys.dead], [self._io.group]
            )
        return QueueStats(
            ready=max(int(length) - int(pending), 0),
            delayed=int(delayed),
            unacked=int(pending),
            dead=int(dead),
        )

    async def preflight(self, time_limits_s: Mapping[str, float | None]) -> list[str]:
        """Refuse task settings the lease cannot cover; warn about unsafe Redis settings.

        With ``renew_leases`` (the default) the worker renews a running task's
        lease every ``visibility_timeout / 3`` seconds, so any ``time_limit``
        (or none) is covered. Without renewal a task must finish, time limit
        included, inside one visibility timeout, or it would run twice.

        Raises:
            ConfigurationError: ``renew_leases=False`` and a task's time_limit is
                missing or not below ``visibility_timeout``.
        """
        vt_s = self.options.visibility_timeout
        if not self.options.renew_leases:
            uncovered = {n: t for n, t in time_limits_s.items() if t is None or t >= vt_s}
            if uncovered:
                names = ", ".join(f"{n} (time_limit={t})" for n, t in sorted(uncovered.items()))
                raise ConfigurationError(
                    f"renew_leases is off, so every task's time_limit must be below "
                    f"visibility_timeout={vt_s}s, or a long run is reclaimed and runs twice: "
                    f"{names}. Set renew_leases=true, raise visibility_timeout, or lower "
                    f"the time limits."
                )
        return await self._server_warnings()

    async def _server_warnings(self) -> list[str]:
        try:
            with translate_errors("CONFIG GET"):
                config = {}
                for name in ("maxmemory-policy", "appendonly", "save"):
                    config.update(_text_dict(await self._io.client.config_get(name)))
        except BrokerUnavailable:
            raise
        except BrokerError as exc:  # CONFIG renamed or disabled (managed Redis)
            return [
                f"could not read Redis settings with CONFIG GET ({exc}); check by hand "
                "that maxmemory-policy is noeviction and persistence is on"
            ]
        return _config_warnings(config)


def _ms(seconds: float) -> int:
    """Whole milliseconds, rounded up so a delay is never shortened; bad values mean now."""
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return math.ceil(seconds * 1000)


def _token(message_id: str) -> str:
    """A delayed message's sorted-set member: unique, and it carries the message id."""
    return f"{uuid.uuid4().hex}:{message_id}"


def _entry_id(delivery: Delivery) -> bytes:
    handle = delivery.handle
    assert isinstance(handle, Handle)
    return handle.entry_id


def _text_dict(raw: Mapping[Any, Any]) -> dict[str, str]:
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    return {text(k): text(v) for k, v in raw.items()}


def _config_warnings(config: Mapping[str, str]) -> list[str]:
    warnings = []
    policy = config.get("maxmemory-policy", "")
    if policy and policy != "noeviction":
        warnings.append(
            f"Redis maxmemory-policy is {policy!r}: under memory pressure Redis may evict "
            "queue keys and lose tasks silently; set maxmemory-policy noeviction"
        )
    aof, save = config.get("appendonly", ""), config.get("save", "").strip()
    if aof == "no" and not save:
        warnings.append(
            "Redis persistence is off (appendonly no, no save points): a Redis restart "
            "loses every queued task; set appendonly yes (see docs/redis.md)"
        )
    elif aof == "no":
        warnings.append(
            f"Redis persists by RDB snapshots only (save {save!r}): a restart loses what "
            "was enqueued or acked since the last snapshot; set appendonly yes"
        )
    return warnings


def _json(raw: bytes | str) -> object:
    try:
        return json.loads(raw)
    except ValueError:  # written by something else: not a record
        return None
