"""The RabbitMQ consumer: a channel with basic.qos = prefetch, and a local buffer.

A delivery tag is only meaningful on the channel that delivered it. Each
Delivery's handle keeps that exact (aiormq) channel object: its *generation*.
The robust connection replaces the object after a reconnect, so a delivery
whose channel is closed is stale, and settling it raises StaleDelivery
without sending a frame anywhere; acking an unknown tag on the new channel
would close that channel (PRECONDITION_FAILED) and requeue all it holds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aioack.brokers.base import Consumer, Delivery, wait_out
from aioack.brokers.rabbitmq.acks import ChannelAcks
from aioack.brokers.rabbitmq.errors import translated
from aioack.brokers.rabbitmq.topology import read_receipt
from aioack.errors import BrokerError, BrokerUnavailable

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

logger = logging.getLogger("aioack.brokers.rabbitmq")


@dataclass(eq=False, slots=True)
class AmqpHandle:
    """Where a delivery came from; only its own channel object may settle it."""

    consumer: RabbitConsumer
    queue: str
    channel: Any  # the aiormq channel: its generation
    acks: ChannelAcks  # that channel's coalesced acks
    tag: int
    message_id: str | None
    headers: dict[str, Any] = field(default_factory=dict)
    settled: bool = False

    @property
    def stale(self) -> bool:
        return bool(self.channel.is_closed) or self.consumer.closed


#: Hand back a delivery that never reached the worker (see RabbitMQBroker.release).
Releaser = Callable[[Delivery], Awaitable[None]]


class RabbitConsumer(Consumer):
    def __init__(
        self,
        channel: AbstractRobustChannel,
        queues: Sequence[str],
        prefetch: int,
        release: Releaser,
        is_connected: Callable[[], bool],
        rpc_timeout_s: float,
        broker_counts: bool,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        #: basic.consume arguments (the worker's record, for the management API).
        self._arguments = arguments
        self._channel = channel
        #: Quorum queues count returns in x-delivery-count; classic ones do not.
        self._broker_counts = broker_counts
        self._rpc_timeout_s = rpc_timeout_s
        self._queue_names = tuple(queues)
        self._prefetch = prefetch
        self._release = release
        self._is_connected = is_connected
        self._buffer: asyncio.Queue[Delivery] = asyncio.Queue()
        self._held: set[AmqpHandle] = set()
        self._room = asyncio.Event()
        self._tags: list[tuple[AbstractQueue, str]] = []
        self._acks: ChannelAcks | None = None
        self._receiving = True
        self._loss_listener: Callable[[], None] | None = None
        self.closed = False

    async def start(self, queues: Sequence[AbstractQueue]) -> None:
        for queue in queues:
            tag = await queue.consume(
                functools.partial(self._on_message, queue.name), arguments=self._arguments
            )
            self._tags.append((queue, tag))

    async def _on_message(self, queue: str, message: AbstractIncomingMessage) -> None:
        # Runs in aio-pika's delivery path: no awaits, order kept per queue.
        headers = dict(message.headers or {})
        channel = message.channel
        if self._acks is None or self._acks.channel is not channel:
            self._acks = ChannelAcks(channel)  # a new channel generation
            channel.closing.add_done_callback(self._generation_closed)
        tag = int(message.delivery_tag or 0)
        self._acks.delivered(tag)
        receipt = read_receipt(
            headers, redelivered=bool(message.redelivered), broker_counts=self._broker_counts
        )
        handle = AmqpHandle(
            consumer=self,
            queue=queue,
            channel=channel,
            acks=self._acks,
            tag=tag,
            message_id=message.message_id,
            headers=headers,
        )
        delivery = Delivery(
            queue=queue,
            body=message.body,
            delivery_count=receipt.delivery_count,
            redelivered=receipt.redelivered,
            handle=handle,
            malformed=receipt.malformed,
        )
        self._buffer.put_nowait(delivery)

    def watch_losses(self, listener: Callable[[], None]) -> None:
        self._loss_listener = listener

    def _generation_closed(self, closing: asyncio.Future[Any]) -> None:
        # Every delivery of that channel is stale now: RabbitMQ requeues them.
        if not closing.cancelled():
            closing.exception()  # retrieved: a closed channel is expected here
        if self._loss_listener is not None:
            self._loss_listener()

    def _live_held(self) -> int:
        # Deliveries of a dead channel never get settled here: drop them (rarely runs).
        self._held = {h for h in self._held if not h.stale}
        return len(self._held)

    async def get(self, timeout_s: float) -> Delivery | None:
        deadline = time.monotonic() + timeout_s
        while self._receiving:
            remaining_s = deadline - time.monotonic()
            if len(self._held) >= self._prefetch and self._live_held() >= self._prefetch:
                # One consumer per queue may each fill its own qos window:
                # the bound the worker relies on is kept here.
                if not await _wait(self._room, remaining_s):
                    return None
                continue
            try:
                if self._buffer.empty():
                    delivery = await asyncio.wait_for(self._buffer.get(), max(remaining_s, 0))
                else:
                    delivery = self._buffer.get_nowait()  # hot path: no timer, no task
            except TimeoutError:
                if not self._is_connected():
                    raise BrokerUnavailable("RabbitMQ connection is down; reconnecting") from None
                return None
            handle = delivery.handle
            assert isinstance(handle, AmqpHandle)
            if handle.stale:
                continue  # its channel died: RabbitMQ has requeued it already
            self._held.add(handle)
            return delivery
        await wait_out(deadline)
        return None

    def forget(self, handle: AmqpHandle) -> None:
        """A delivery was settled (or is being): it no longer takes a prefetch slot."""
        handle.settled = True
        self._held.discard(handle)
        self._room.set()
        self._room = asyncio.Event()

    def held_on(self, queue: str) -> int:
        return sum(1 for h in self._held if not h.stale and h.queue == queue)

    async def cancel(self) -> None:
        if not self._receiving:
            return
        self._receiving = False
        self._room.set()
        tags, self._tags = self._tags, []
        for queue, tag in tags:
            if not self._is_connected():
                # No connection, so no consumer on the broker's side, and no
                # RPC may wait for a reconnect that may never come. close()
                # follows; a consumer restored in between only fills the
                # buffer, which the closing channel hands back.
                continue
            try:
                with translated(f"cancel consumer on {queue.name!r}"):
                    await queue.cancel(tag, timeout=self._rpc_timeout_s)
            except BrokerError as exc:
                logger.warning("basic.cancel on %s failed: %s", queue.name, exc)
        await self._hand_back_buffered()

    async def _hand_back_buffered(self) -> None:
        """Deliveries pushed to us but never given to the worker go back, uncounted."""
        pending: list[Delivery] = []
        while not self._buffer.empty():
            delivery = self._buffer.get_nowait()
            handle = delivery.handle
            assert isinstance(handle, AmqpHandle)
            if not handle.stale:
                self._held.add(handle)
                pending.append(delivery)
        results = await asyncio.gather(*(self._release(d) for d in pending), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                # The channel closes next: RabbitMQ requeues what we could not hand back.
                logger.warning("could not hand back a buffered delivery: %s", result)

    async def close(self) -> None:
        if self.closed:
            return
        await self.cancel()
        self.closed = True
        self._held.clear()
        try:
            with translated("close consumer channel"):
                async with asyncio.timeout(self._rpc_timeout_s):
                    await self._channel.close()
        except BrokerError as exc:
            logger.warning("closing the consumer channel failed: %s", exc)


async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), max(timeout_s, 0))
    except TimeoutError:
        return False
    return True
