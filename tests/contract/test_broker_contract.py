"""The Broker contract: every broker passes this same suite.

A broker joins by being listed in tests/conftest.py BROKER_KINDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from aioack.brokers import Broker, DeadLetter, Delivery
from aioack.errors import StaleDelivery

pytestmark = pytest.mark.contract

GOT = 5.0  # seconds to wait for a delivery that must come
NONE = 0.2  # seconds to wait for a delivery that must not come


async def _get(consumer_get: Callable[..., object], timeout_s: float = GOT) -> Delivery:
    delivery = await consumer_get(timeout_s)  # type: ignore[misc]
    assert isinstance(delivery, Delivery), "expected a delivery, got none"
    return delivery


async def test_published_message_is_delivered_once_and_gone_after_ack(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    await broker.publish(queue, b'{"x":1}', message_id="m1")
    consumer = await broker.consume([queue], prefetch=10)
    delivery = await _get(consumer.get)
    assert (delivery.body, delivery.queue) == (b'{"x":1}', queue)
    assert (delivery.delivery_count, delivery.redelivered) == (1, False)
    assert (await broker.stats(queue)).unacked == 1
    await broker.ack(delivery)
    assert await consumer.get(NONE) is None
    stats = await broker.stats(queue)
    assert stats.pending == 0 and stats.dead == 0
    await consumer.close()


async def test_consumer_never_holds_more_than_prefetch(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    for i in range(5):
        await broker.publish(queue, str(i).encode(), message_id=f"m{i}")
    consumer = await broker.consume([queue], prefetch=2)
    held = [await _get(consumer.get), await _get(consumer.get)]
    assert await consumer.get(NONE) is None, "a third delivery broke the prefetch bound"
    await broker.ack(held[0])
    held.append(await _get(consumer.get))
    assert await consumer.get(NONE) is None
    assert [d.body for d in held] == [b"0", b"1", b"2"]
    for d in held[1:]:
        await broker.ack(d)
    await consumer.close()


async def test_unsettled_deliveries_come_back_redelivered_when_consumer_closes(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    await broker.publish(queue, b"a", message_id="a")
    first = await broker.consume([queue], prefetch=5)
    delivery = await _get(first.get)
    await first.close()
    second = await broker.consume([queue], prefetch=5)
    again = await _get(second.get)
    assert again.body == b"a"
    assert again.redelivered is True
    assert again.delivery_count == 2
    await broker.ack(again)
    with pytest.raises(StaleDelivery):
        await broker.ack(delivery)
    await second.close()


async def test_requeue_counts_a_delivery_and_release_does_not(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    await broker.publish(queue, b"r", message_id="r")
    consumer = await broker.consume([queue], prefetch=5)
    await broker.requeue(await _get(consumer.get))
    requeued = await _get(consumer.get)
    assert (requeued.delivery_count, requeued.redelivered) == (2, True)
    await broker.release(requeued)
    released = await _get(consumer.get)
    assert released.body == b"r"
    assert released.delivery_count == 2, "release (never started) must not count"
    # Nor forget that the message was handed out and not finished before.
    assert released.redelivered, "a released redelivery is still a redelivery"
    await broker.ack(released)
    await consumer.close()


async def test_delayed_publish_is_held_by_the_broker_until_due(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, delay_s = new_queue(), 0.6
    await broker.declare([queue])
    sent = time.monotonic()
    await broker.publish(queue, b"later", message_id="d", delay_s=delay_s)
    # Counted as delayed until due (a stalled test process may ask after that).
    delayed = (await broker.stats(queue)).delayed
    assert delayed == 1 or time.monotonic() - sent >= delay_s, "not counted as delayed"
    consumer = await broker.consume([queue], prefetch=5)
    delivery = await _get(consumer.get)
    assert delivery.body == b"later"
    # Held until due: a busy machine may hand it over late, never early. (10 ms:
    # the brokers keep due times in milliseconds, some on the wall clock.)
    early_s = sent + delay_s - delivery.received_at
    assert early_s <= 0.01, f"a delayed message came {early_s:.3f}s early"
    await broker.ack(delivery)
    await consumer.close()


async def test_retry_replaces_the_delivery_with_a_delayed_copy(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    await broker.publish(queue, b"attempt-1", message_id="t")
    consumer = await broker.consume([queue], prefetch=5)
    # 1 s: the copy is still delayed when stats() asks, however busy the machine.
    await broker.retry(await _get(consumer.get), b"attempt-2", delay_s=1.0)
    stats = await broker.stats(queue)
    assert (stats.ready, stats.unacked) == (0, 0)
    copy = await _get(consumer.get)
    assert copy.body == b"attempt-2"
    await broker.ack(copy)
    assert (await broker.stats(queue)).pending == 0
    await consumer.close()


async def test_dead_letter_keeps_reason_error_traceback_and_exact_body(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    garbage = b"\xff\x00not json\x80"
    await broker.publish(queue, garbage, message_id="g")
    consumer = await broker.consume([queue], prefetch=5)
    delivery = await _get(consumer.get)
    letter = DeadLetter(
        queue=queue,
        reason="malformed",
        body=delivery.body,
        detail="not JSON",
        error="ValueError: boom",
        traceback="Traceback (most recent call last): ...",
        delivery_count=delivery.delivery_count,
        attempt=None,
        message_id="g",
    )
    await broker.dead_letter(delivery, letter)
    stats = await broker.stats(queue)
    assert (stats.pending, stats.dead) == (0, 1)
    [stored] = await broker.dead_letters(queue)
    assert stored.body == garbage
    assert (stored.reason, stored.detail, stored.error) == ("malformed", "not JSON", letter.error)
    assert stored.traceback == letter.traceback
    assert (stored.delivery_count, stored.message_id) == (1, "g")
    await consumer.close()


async def test_add_dead_letter_stores_a_letter_without_a_delivery(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    await broker.add_dead_letter(DeadLetter(queue=queue, reason="failed", body=b"{}", attempt=3))
    [stored] = await broker.dead_letters(queue)
    assert (stored.reason, stored.attempt) == ("failed", 3)


async def test_extend_reports_only_deliveries_this_consumer_lost(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    await broker.publish(queue, b"x", message_id="x")
    consumer = await broker.consume([queue], prefetch=5)
    delivery = await _get(consumer.get)
    assert await broker.extend([delivery]) == []
    await consumer.close()
    assert await broker.extend([delivery]) == [delivery]


async def test_cancelled_consumer_gets_nothing_new_but_can_still_settle(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    await broker.publish(queue, b"1", message_id="1")
    consumer = await broker.consume([queue], prefetch=1)
    held = await _get(consumer.get)
    await broker.publish(queue, b"2", message_id="2")
    await consumer.cancel()
    await broker.ack(held)
    assert await consumer.get(NONE) is None
    other = await broker.consume([queue], prefetch=5)
    assert (await _get(other.get)).body == b"2"
    await other.close()
    await consumer.close()


async def test_one_consumer_reads_several_queues_and_publish_many_keeps_order(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    q1, q2 = new_queue(), new_queue()
    await broker.declare([q1, q2])
    await broker.publish_many(q1, [(f"a{i}", f"a{i}".encode()) for i in range(3)])
    await broker.publish(q2, b"b0", message_id="b0")
    consumer = await broker.consume([q1, q2], prefetch=10)
    got = [await _get(consumer.get) for _ in range(4)]
    assert sorted(d.body for d in got) == [b"a0", b"a1", b"a2", b"b0"]
    assert [d.body for d in got if d.queue == q1] == [b"a0", b"a1", b"a2"]
    for d in got:
        await broker.ack(d)
    await consumer.close()


async def test_a_cancelled_or_closed_consumer_still_waits_out_get_timeouts(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    consumer = await broker.consume([queue], prefetch=1)
    await consumer.cancel()
    started = time.monotonic()
    assert await consumer.get(0.2) is None
    await consumer.close()
    assert await consumer.get(0.2) is None
    # A worker polls get() in a loop: an instant None would spin the event loop.
    assert time.monotonic() - started >= 0.35


async def test_a_publish_made_between_two_gets_is_seen_by_the_next_get(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    # No get() is waiting when it is published (nothing held, the consumer idle
    # before): the next get() must still find it, not wait for another process.
    queue = new_queue()
    await broker.declare([queue])
    consumer = await broker.consume([queue], prefetch=5)
    assert await consumer.get(NONE) is None
    await broker.publish(queue, b"between", message_id="b")
    delivery = await _get(consumer.get, 2.0)
    assert delivery.body == b"between"
    await broker.ack(delivery)
    await consumer.close()
