"""Leases: fenced settles, renewal, reclaim and the delivery count it feeds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from aioack.brokers import DeadLetter, Delivery
from aioack.brokers.redis import RedisBroker
from aioack.errors import LeaseLost
from tests.support import wait_until


async def _reclaim(broker: RedisBroker, queue: str, timeout_s: float = 5.0) -> Delivery:
    """A second consumer polls until the first one's lease runs out and it takes the entry."""
    consumer = await broker.consume([queue], prefetch=5)
    got: list[Delivery] = []

    async def reclaimed() -> bool:
        delivery = await consumer.get(0.1)
        if delivery is not None:
            got.append(delivery)
        return bool(got)

    await wait_until(reclaimed, timeout=timeout_s, message="a reclaim")
    return got[0]


SETTLES: dict[str, Callable[[RedisBroker, Delivery], Awaitable[None]]] = {
    "ack": lambda b, d: b.ack(d),
    "requeue": lambda b, d: b.requeue(d),
    "release": lambda b, d: b.release(d),
    "retry": lambda b, d: b.retry(d, b"copy", delay_s=0.0),
    "dead_letter": lambda b, d: b.dead_letter(d, DeadLetter(d.queue, "failed", d.body)),
}


@pytest.mark.parametrize("settle", sorted(SETTLES))
async def test_a_consumer_whose_lease_was_reclaimed_cannot_settle_and_changes_nothing(
    broker: RedisBroker, queue: str, settle: str
) -> None:
    # Given a delivery held past the visibility timeout without renewal
    await broker.publish(queue, b"job", message_id="m")
    stalled = await (await broker.consume([queue], prefetch=1)).get(2.0)
    assert stalled is not None
    # When another consumer reclaims it
    taken = await _reclaim(broker, queue)
    assert (taken.body, taken.redelivered, taken.delivery_count) == (b"job", True, 2)
    # Then the stalled consumer's settle is refused, and nothing moved
    with pytest.raises(LeaseLost):
        await SETTLES[settle](broker, stalled)
    stats = await broker.stats(queue)
    assert (stats.ready, stats.delayed, stats.unacked, stats.dead) == (0, 0, 1, 0)
    assert await broker.extend([taken]) == []
    await broker.ack(taken)
    assert (await broker.stats(queue)).pending == 0


async def test_renewal_keeps_an_entry_through_several_visibility_timeouts(
    broker: RedisBroker, queue: str
) -> None:
    await broker.publish(queue, b"long", message_id="m")
    holder = await broker.consume([queue], prefetch=1)
    held = await holder.get(2.0)
    assert held is not None
    rival = await broker.consume([queue], prefetch=5)
    loop = asyncio.get_running_loop()
    until = loop.time() + 4 * broker.options.visibility_timeout
    while loop.time() < until:
        # The worker's AckManager renews every lease_check_interval_s; so do we.
        assert await broker.extend([held]) == []
        assert await rival.get(broker.lease_check_interval_s) is None, "renewed entry reclaimed"
    await broker.ack(held)
    assert (await broker.stats(queue)).pending == 0


async def test_extend_reports_a_delivery_another_consumer_reclaimed(
    broker: RedisBroker, queue: str
) -> None:
    await broker.publish(queue, b"x", message_id="m")
    stalled = await (await broker.consume([queue], prefetch=1)).get(2.0)
    assert stalled is not None
    await _reclaim(broker, queue)
    assert await broker.extend([stalled]) == [stalled]


async def test_delivery_count_grows_with_every_reclaim_and_copy(
    broker: RedisBroker, queue: str
) -> None:
    await broker.publish(queue, b"crashy", message_id="m")
    first = await (await broker.consume([queue], prefetch=1)).get(2.0)
    assert first is not None and first.delivery_count == 1
    second = await _reclaim(broker, queue)  # first "crashed"
    third = await _reclaim(broker, queue)  # second "crashed"
    assert (second.delivery_count, third.delivery_count) == (2, 3)
    await broker.requeue(third)  # carried over into the copy
    consumer = await broker.consume([queue], prefetch=1)
    fourth = await consumer.get(2.0)
    assert fourth is not None and (fourth.delivery_count, fourth.redelivered) == (4, True)
    await broker.release(fourth)  # never started: not counted
    fifth = await consumer.get(2.0)
    assert fifth is not None and fifth.delivery_count == 4
    await broker.ack(fifth)


async def test_read_ahead_never_exceeds_prefetch_even_with_reclaimed_entries(
    broker: RedisBroker, queue: str
) -> None:
    await broker.publish_many(queue, [(f"m{i}", b"%d" % i) for i in range(6)])
    abandoned = await broker.consume([queue], prefetch=3)
    for _ in range(3):
        assert await abandoned.get(2.0) is not None
    await asyncio.sleep(broker.options.visibility_timeout)
    consumer = await broker.consume([queue], prefetch=4)
    held = [d for d in [await consumer.get(1.0) for _ in range(4)] if d is not None]
    assert len(held) == 4
    assert await consumer.get(0.2) is None, "a fifth delivery broke the prefetch bound"
    assert sum(d.redelivered for d in held) == 3, "the abandoned entries come first"
    info = await broker._io.client.xinfo_consumers(broker._io.keys(queue).stream, "aioack")
    pending = {c["name"].decode(): c["pending"] for c in info}
    assert pending[next(iter(held)).handle.consumer.name] == 4  # type: ignore[attr-defined]
