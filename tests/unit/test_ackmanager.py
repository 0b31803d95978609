"""AckManager: settle once, fence deliveries this worker lost."""

from __future__ import annotations

import pytest

from aioack.brokers import MemoryBroker
from aioack.decide import ACK, REQUEUE
from aioack.errors import AlreadySettled
from aioack.worker.ackmanager import AckManager, Held


async def _held(broker: MemoryBroker, lost: list[Held]) -> tuple[AckManager, Held, object]:
    await broker.connect()
    await broker.publish("q", b"{}", message_id="m")
    consumer = await broker.consume(["q"], prefetch=1)
    delivery = await consumer.get(1.0)
    assert delivery is not None
    acks = AckManager(broker, on_lost=lost.append)
    return acks, acks.receive(delivery), consumer


async def test_a_second_settle_is_refused_in_process() -> None:
    broker, lost = MemoryBroker(), []
    acks, held, _ = await _held(broker, lost)
    await acks.ack_early(held)
    with pytest.raises(AlreadySettled):
        await acks.ack_early(held)
    with pytest.raises(AlreadySettled):
        await acks.settle(held, REQUEUE)
    assert (await broker.stats("q")).pending == 0, "the first ack went through, once"


async def test_renewal_reports_a_lost_delivery_and_later_settles_send_nothing() -> None:
    broker, lost = MemoryBroker(), []
    acks, held, consumer = await _held(broker, lost)
    await consumer.close()  # e.g. the connection dropped: the broker takes it back
    await acks.renew_once()
    assert lost == [held] and held.lost
    await acks.settle(held, ACK)  # must not ack what another consumer may hold
    stats = await broker.stats("q")
    assert (stats.ready, stats.unacked) == (1, 0), "the message waits to be redelivered"
    assert acks.held_count == 0
