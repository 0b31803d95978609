"""RabbitMQBroker: aio-pika with publisher confirms, quorum queues and channel-safe acks.

Layout per work queue ``q`` (all durable, declared by ``declare``):

* ``q``                the work queue (quorum by default); RabbitMQ dead-letters
                       into ``q.dead`` past ``delivery_limit`` returns.
* ``q.dead``           dead letters, with aioack's reason/error/traceback headers.
* ``q.delay.L<k>``     delay level k (TTL 2^k ms), made when a delay first
                       needs it and never expired: see ``delays``.

Settles always go to the channel object that delivered the message (see
``consumer``); a republished copy (release, retry, dead letter) is
confirmed before the original is acked, so a crash in between duplicates and
never loses. Client errors are translated in ``errors``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustChannel, AbstractRobustConnection
from aiormq import spec

from aioack.brokers.base import (
    Broker,
    Consumer,
    DeadLetter,
    Delivery,
    LetterPass,
    QueueStats,
    WorkerRecord,
)
from aioack.brokers.rabbitmq import topology as topo
from aioack.brokers.rabbitmq.consumer import AmqpHandle, RabbitConsumer
from aioack.brokers.rabbitmq.delays import (
    LEVELS,
    MAX_QUEUE_NAME_BYTES,
    DelayLevels,
    delay_ms,
    level_queue,
)
from aioack.brokers.rabbitmq.errors import (
    translated,
    translated_connect,
    translated_publish,
    translated_settle,
)
from aioack.brokers.rabbitmq.letters import RabbitLetterPass
from aioack.brokers.rabbitmq.management import ManagementAPI
from aioack.brokers.rabbitmq.options import parse_url
from aioack.errors import (
    BrokerUnavailable,
    ConfigurationError,
    PublishFailed,
    QueueFull,
    StaleDelivery,
)
from aioack.limits import QueueLimit
from aioack.urls import masked

logger = logging.getLogger("aioack.brokers.rabbitmq")

_PERSISTENT = 2

#: A settle's copy refused by a full queue goes through the 1 ms delay level,
#: which RabbitMQ dead-letters into the queue past its limit (see ``_settle_copy``).
_AROUND_FULL_S = 0.001


class RabbitMQBroker(Broker):
    """RabbitMQ through one robust connection: a confirm channel, one channel per consumer."""

    #: A full queue refuses each message of a batch on its own (negative confirms).
    batches_all_or_none = False

    def __init__(self, url: str = "amqp://guest:guest@127.0.0.1:5672/", **options: Any) -> None:
        self._url, self.options = parse_url(url, options)
        self.lease_check_interval_s = self.options.lease_check_interval_s
        self._conn: AbstractRobustConnection | None = None
        self._pub: AbstractRobustChannel | None = None
        self._consumers: set[RabbitConsumer] = set()
        self._delays = DelayLevels(self.options)
        self._delay_lock = asyncio.Lock()
        #: This worker's record, carried by its consumers (see announce).
        self._announced: WorkerRecord | None = None
        self._management = (
            ManagementAPI(
                self.options.management_url, url, timeout_s=self.options.publish_timeout_s
            )
            if self.options.management_url
            else None
        )
        self._connect_lock = asyncio.Lock()

    @property
    def location(self) -> str:
        return masked(self._url)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RabbitMQBroker:
        """``amqp://user:pass@host:5672/vhost?queue_type=classic&delivery_limit=5``."""
        return cls(url, **options)

    def use_limits(self, limits: Mapping[str, QueueLimit]) -> None:
        """Refuse what RabbitMQ cannot hold: ``max_unacked``, and ``max_length`` on
        classic queues.

        Raises:
            ConfigurationError: says which limit and why.
        """
        for queue, limit in limits.items():
            if limit.max_unacked is not None:
                raise ConfigurationError(
                    f"queue_limits[{queue!r}].max_unacked: RabbitMQ cannot cap a queue's "
                    "unacked messages across consumers (basic.qos is per consumer): bound "
                    "them with prefetch x workers, or use unacked_watermark to be told"
                )
            if limit.max_length is not None and self.options.queue_type == "classic":
                raise ConfigurationError(
                    f"queue_limits[{queue!r}].max_length needs queue_type=quorum: a full "
                    "classic queue drops what RabbitMQ dead-letters into it, so a delayed "
                    "retry coming due would be lost"
                )
        super().use_limits(limits)

    # -- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        async with self._connect_lock:
            if self._conn is not None and not self._conn.is_closed:
                return
            opts = self.options
            with translated_connect(self._url):
                self._conn = await aio_pika.connect_robust(
                    self._url,
                    timeout=opts.connect_timeout_s,
                    reconnect_interval=opts.reconnect_interval_s,
                    heartbeat=opts.heartbeat_s,
                    client_properties={"connection_name": "aioack"},
                )
                # on_return_raises: a mandatory message no queue took fails its publish.
                self._pub = await self._conn.channel(publisher_confirms=True, on_return_raises=True)

    async def aclose(self) -> None:
        for consumer in list(self._consumers):
            await consumer.close()
        self._consumers.clear()
        conn, self._conn, self._pub = self._conn, None, None
        if conn is not None:
            try:
                async with asyncio.timeout(self.options.publish_timeout_s):
                    await conn.close()
            except Exception as exc:  # never raises: shutting down anyway
                logger.debug("closing the RabbitMQ connection: %r", exc)

    def _connection(self) -> AbstractRobustConnection:
        if self._conn is None or self._conn.is_closed:
            raise BrokerUnavailable("RabbitMQ broker is not connected; call connect() first")
        return self._conn

    def _is_connected(self) -> bool:
        return self._conn is not None and self._conn.connected.is_set()

    @asynccontextmanager
    async def _side_channel(self) -> AsyncIterator[aiormq.abc.AbstractChannel]:
        """A short-lived channel for what may close it (passive declares, conflicts, gets)."""
        async with asyncio.timeout(self.options.publish_timeout_s):
            channel = await self._connection().channel(publisher_confirms=False)
        try:
            yield await channel.get_underlay_channel()
        finally:
            if not channel.is_closed:
                await channel.close()

    # -- topology ----------------------------------------------------------

    async def declare(self, queues: Sequence[str]) -> None:
        opts = self.options
        with translated(f"declare {list(queues)!r}"):
            async with self._side_channel() as channel:
                for queue in queues:
                    await channel.queue_declare(
                        topo.dead_queue(queue), durable=True, arguments=topo.dead_queue_args(opts)
                    )
                    await channel.queue_declare(
                        queue,
                        durable=True,
                        arguments=topo.work_queue_args(opts, queue, self.max_length(queue)),
                    )
                    if len(queue.encode()) <= MAX_QUEUE_NAME_BYTES:  # else: no delays
                        await self._delays.attach(channel, queue)

    async def delete(self, queues: Sequence[str]) -> None:
        with translated(f"delete {list(queues)!r}"):
            async with self._side_channel() as channel:
                for queue in queues:
                    names = [queue, topo.dead_queue(queue), *self._delays.forget(queue)]
                    for name in names:
                        await channel.queue_delete(name)  # a missing queue is not an error

    async def _declare_delay(self, queue: str, ms: int) -> None:
        """Make the levels a delay of ``ms`` passes through exist, before publishing it."""
        async with self._delay_lock:
            if not self._delays.needs_declaring(queue, ms):
                return
            with translated_publish(queue):
                async with self._side_channel() as channel:
                    try:
                        await self._delays.declare(channel, queue, ms)
                    except aiormq.exceptions.ChannelNotFoundEntity as exc:
                        raise PublishFailed(f"queue {queue!r} does not exist; declare it") from exc

    # -- producing ---------------------------------------------------------

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, delay_s: float = 0.0
    ) -> None:
        await self._publish(queue, body, message_id, {}, delay_s)

    async def publish_many(self, queue: str, items: Sequence[tuple[str, bytes]]) -> None:
        # Pipelined: frames go out in order (aiormq's publish lock is FIFO), the
        # confirms are awaited together.
        await asyncio.gather(*(self._publish(queue, body, mid, {}, 0.0) for mid, body in items))

    async def _publish(
        self,
        queue: str,
        body: bytes,
        message_id: str,
        headers: dict[str, Any],
        delay_s: float,
        *,
        routing_key: str | None = None,
    ) -> None:
        exchange, target = "", routing_key or queue
        # Straight into a work queue (not delayed, not a dead letter): its limit applies.
        limited = routing_key is None and delay_s <= 0 and self._limited(queue)
        if delay_s > 0:
            ms = delay_ms(delay_s)
            if self._delays.needs_declaring(queue, ms):
                await self._declare_delay(queue, ms)
            exchange, target = self._delays.route(queue, ms)
        properties = spec.Basic.Properties(
            delivery_mode=_PERSISTENT, message_id=message_id, headers=headers or None
        )
        with translated_publish(queue, limited=limited, max_length=self.max_length(queue)):
            async with asyncio.timeout(self.options.publish_timeout_s):
                channel = await self._publish_channel()
                # mandatory: a message no queue takes fails its publish (returned).
                await channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=target,
                    properties=properties,
                    mandatory=True,
                )

    def _limited(self, queue: str) -> bool:
        """Whether a negative confirm from ``queue`` means it is full."""
        return self.max_length(queue) is not None or self.options.limit_by == "policy"

    async def _settle_copy(
        self, queue: str, body: bytes, message_id: str, headers: dict[str, Any], delay_s: float
    ) -> None:
        """Publish a settle's copy (retry, hand-back), which a full queue must not refuse.

        The copy replaces a message the queue holds, so the queue does not
        grow; but RabbitMQ refuses any publish into a full queue. Refused,
        the copy goes through the 1 ms delay level instead, from which RabbitMQ
        dead-letters it into the queue at-least-once: it gets in (sometimes
        past the limit), or, while the queue still refuses, RabbitMQ's
        dead-letter worker keeps it and tries again (every 180 s by default).
        Later, never lost; counted meanwhile only through the management API
        (``stats()`` with ``management_url``).
        """
        try:
            await self._publish(queue, body, message_id, headers, delay_s)
        except QueueFull:
            logger.info("rabbitmq: %s is full: a settle's copy goes around through a delay", queue)
            await self._publish(queue, body, message_id, headers, _AROUND_FULL_S)

    async def _publish_channel(self) -> aiormq.abc.AbstractChannel:
        """The confirm channel of the current generation, once it is restored.

        Right after a reconnect the robust channel may still hand out the old,
        closed channel object; publishing there fails although nothing is wrong.
        """
        while True:
            if self._pub is None:
                raise BrokerUnavailable("RabbitMQ broker is not connected")
            await self._pub.ready()
            channel = await self._pub.get_underlay_channel()
            if not channel.is_closed:
                return channel
            await asyncio.sleep(0.02)

    # -- consuming ---------------------------------------------------------

    async def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        if prefetch < 1:
            raise ValueError("prefetch must be >= 1")
        await self.declare(queues)
        conn = self._connection()
        with translated(f"consume {list(queues)!r}"):
            channel = await conn.channel(publisher_confirms=False)
            # basic.qos before basic.consume: RabbitMQ applies it to later consumers.
            await channel.set_qos(prefetch_count=prefetch)
            declared = [
                await channel.declare_queue(
                    q,
                    durable=True,
                    arguments=topo.work_queue_args(self.options, q, self.max_length(q)),
                )
                for q in queues
            ]
            consumer = RabbitConsumer(
                channel,
                queues,
                prefetch,
                self.release,
                self._is_connected,
                rpc_timeout_s=self.options.publish_timeout_s,
                broker_counts=self.options.queue_type == "quorum",
                arguments=_consumer_arguments(self._announced),
            )
            await consumer.start(declared)
        self._consumers.add(consumer)
        return consumer

    # -- settling ----------------------------------------------------------

    def _live(self, delivery: Delivery) -> AmqpHandle:
        handle = delivery.handle
        if not isinstance(handle, AmqpHandle) or handle.settled or handle.stale:
            raise StaleDelivery(
                f"delivery on {delivery.queue!r} is no longer held here (channel closed or "
                "settled); RabbitMQ redelivers it"
            )
        return handle

    async def ack(self, delivery: Delivery) -> None:
        handle = self._live(delivery)
        handle.consumer.forget(handle)
        with translated_settle(f"ack on {delivery.queue!r}"):
            await handle.acks.ack(handle.tag)

    async def requeue(self, delivery: Delivery) -> None:
        handle = self._live(delivery)
        if self.options.queue_type == "classic":
            # Classic queues do not count returns: carry the count in a copy.
            await self._replace(delivery, handle, delivery.delivery_count, redelivered=True)
            return
        handle.consumer.forget(handle)
        with translated_settle(f"requeue on {delivery.queue!r}"):
            # basic.reject, not basic.nack: RabbitMQ 4 counts only reject as a failed delivery.
            handle.acks.settled_elsewhere(handle.tag)
            await handle.channel.basic_reject(handle.tag, requeue=True)

    async def release(self, delivery: Delivery) -> None:
        """A never-started delivery goes back as a fresh copy carrying its count.

        basic.nack would count it (RabbitMQ 3.x) and mark it redelivered; the
        copy joins the back of the queue, which is the price. The copy keeps
        the flag this receipt had: a message that was abandoned or requeued
        before is still "redelivered" (``reject_on_worker_lost`` reads it).
        """
        handle = self._live(delivery)
        await self._replace(
            delivery, handle, delivery.delivery_count - 1, redelivered=delivery.redelivered
        )

    async def _replace(
        self, delivery: Delivery, handle: AmqpHandle, deliveries: int, *, redelivered: bool
    ) -> None:
        headers = topo.copy_headers(handle.headers, deliveries=deliveries, redelivered=redelivered)
        await self._settle_copy(
            delivery.queue, delivery.body, handle.message_id or "", headers, 0.0
        )
        await self.ack(delivery)

    async def retry(self, delivery: Delivery, body: bytes, *, delay_s: float) -> None:
        handle = self._live(delivery)
        await self._settle_copy(delivery.queue, body, handle.message_id or "", {}, delay_s)
        await self.ack(delivery)

    async def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        handle = self._live(delivery)
        if letter.message_id is None:
            # An undecodable body has no envelope id; the AMQP message_id still names it.
            letter = dataclasses.replace(letter, message_id=handle.message_id)
        await self.add_dead_letter(letter)
        await self.ack(delivery)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._publish(
            letter.queue,
            letter.body,
            letter.message_id or "",
            topo.letter_headers(letter),
            0.0,
            routing_key=topo.dead_queue(letter.queue),
        )

    async def extend(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        # No leases on AMQP: only a closed channel (a generation gone) loses a delivery.
        return [d for d in deliveries if not isinstance(d.handle, AmqpHandle) or d.handle.stale]

    # -- inspection --------------------------------------------------------

    async def has_queue(self, queue: str) -> bool:
        if self._management is not None:  # one answer with queues(), which it lists
            return await self._management.queue(queue) is not None
        counts = await self._counts([queue, topo.dead_queue(queue)], missing=-1)
        return any(count >= 0 for count in counts.values())

    async def _letter_pass(self, queue: str, batch_size: int) -> LetterPass:
        """A consumer of ``q.dead`` that holds what it reads (see ``letters``)."""

        async def open_channel() -> AbstractChannel:
            async with asyncio.timeout(self.options.publish_timeout_s):
                return await self._connection().channel(publisher_confirms=False)

        async def publish(target: str, body: bytes, message_id: str) -> None:
            await self._publish(target, body, message_id, {}, 0.0)

        return await RabbitLetterPass.begin(
            open_channel,
            queue,
            batch_size,
            publish=publish,
            wait_s=self.options.publish_timeout_s,
            delivery_limit=self.options.delivery_limit,
            limited=self._limited(queue),
        )

    async def stats(self, queue: str) -> QueueStats:
        """Counts by state. ``unacked`` is every consumer's through the management API
        when ``management_url`` is set; without it, only this process's."""
        counts = await self._counts([queue, topo.dead_queue(queue)])
        unacked = sum(c.held_on(queue) for c in self._consumers)
        delayed = await self._delays.delayed(self._counts, queue)
        if self._management is not None:
            found = await self._management.queue(queue)
            unacked = int((found or {}).get("messages_unacknowledged") or 0)
            delayed += await self._held_by_dead_lettering(queue)
        return QueueStats(
            ready=counts[queue],
            delayed=delayed,
            unacked=unacked,
            dead=counts[topo.dead_queue(queue)],
            unacked_known=self._management is not None,
        )

    async def _held_by_dead_lettering(self, queue: str) -> int:
        """Delayed messages that came due while ``queue`` was full: RabbitMQ's
        dead-letter worker holds them and tries again later (``messages_dlx`` of
        the delay levels). No AMQP count sees them; the management API does."""
        assert self._management is not None
        names = {level_queue(queue, k) for k in range(LEVELS)}
        levels = (
            q
            for q in await self._management.queues(columns="name,messages_dlx")
            if q.get("name") in names
        )
        return sum(int(q.get("messages_dlx") or 0) for q in levels)

    def with_management(self, url: str) -> RabbitMQBroker:
        """The same broker, with its management API at ``url`` (``inspect --management-url``)."""
        same = RabbitMQBroker(self._url, **{**self.options.model_dump(), "management_url": url})
        same.use_limits(self.limits)
        return same

    # -- workers and queues ------------------------------------------------

    async def announce(self, record: WorkerRecord, ttl_s: float) -> None:
        """AMQP has nowhere to keep a record: it rides on this worker's consumers
        (their arguments, made after this call), which the management API lists
        while the connection lives. A dead worker's consumers go with it."""
        self._announced = record

    async def workers(self) -> list[WorkerRecord] | None:
        if self._management is None:
            return None
        unacked = {
            str(ch.get("name")): int(ch.get("messages_unacknowledged") or 0)
            for ch in await self._management.channels()
        }
        found: dict[str, WorkerRecord] = {}
        for consumer in await self._management.consumers():
            record = _record_of(consumer)
            if record is None or record.worker_id in found:
                continue
            channel = str((consumer.get("channel_details") or {}).get("name"))
            found[record.worker_id] = dataclasses.replace(
                record, in_flight=unacked.get(channel, 0), seen_at=time.time()
            )
        return list(found.values())

    async def queues(self) -> list[str] | None:
        if self._management is None:
            return None
        names = (str(q.get("name", "")) for q in await self._management.queues())
        return sorted(name for name in names if topo.is_work_queue(name))

    async def _counts(self, names: Sequence[str], *, missing: int = 0) -> dict[str, int]:
        """Ready messages per queue (``missing`` when there is no such queue), by
        passive declare."""
        counts: dict[str, int] = {}
        with translated("count messages"):
            remaining = list(names)
            while remaining:
                async with self._side_channel() as channel:
                    while remaining:
                        name = remaining.pop(0)
                        try:
                            ok = await channel.queue_declare(name, passive=True)
                        except aiormq.exceptions.ChannelNotFoundEntity:
                            counts[name] = missing
                            break  # a 404 closed the channel: open another
                        counts[name] = int(ok.message_count or 0)
        return counts

    async def preflight(self, time_limits_s: Mapping[str, float | None]) -> list[str]:
        timeout_s = self.options.consumer_timeout_s
        warnings = []
        for task, limit_s in sorted(time_limits_s.items()):
            if limit_s is None or limit_s >= timeout_s:
                shown = "no time_limit" if limit_s is None else f"time_limit={limit_s:g}s"
                warnings.append(
                    f"task {task} has {shown}, not below RabbitMQ's consumer_timeout "
                    f"({timeout_s:g}s): a longer run gets its channel closed and its message "
                    "redelivered; set a time_limit below it, or raise consumer_timeout in "
                    "rabbitmq.conf and pass consumer_timeout_s"
                )
        return warnings


#: The consumer argument a worker's record rides on (see announce).
WORKER_ARGUMENT = "x-aioack-worker"


def _consumer_arguments(record: WorkerRecord | None) -> dict[str, Any] | None:
    return None if record is None else {WORKER_ARGUMENT: json.dumps(record.to_json())}


def _record_of(consumer: dict[str, Any]) -> WorkerRecord | None:
    raw = (consumer.get("arguments") or {}).get(WORKER_ARGUMENT)
    if not isinstance(raw, str):
        return None
    try:
        return WorkerRecord.from_json(json.loads(raw))
    except ValueError:
        return None
