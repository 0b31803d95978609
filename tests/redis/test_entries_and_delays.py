"""What sits in Redis: wrong-shaped entries, delays, dead letters, coalesced acks, cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from aioack.brokers import DeadLetter, Delivery
from aioack.brokers.redis import RedisBroker
from aioack.brokers.redis.consumer import unpack_bodies
from aioack.errors import MalformedMessage
from aioack.message import decode


async def test_wrong_shaped_entries_come_out_as_deliveries_and_do_not_block_the_stream(
    broker: RedisBroker, queue: str, raw: Redis
) -> None:
    stream = broker._io.keys(queue).stream
    # Given entries added by hand, past the broker
    await raw.xadd(stream, {"foo": b"bar"})  # no body
    await raw.xadd(stream, {"body": b"{}", "extra": b"\xff\xfe"})  # an unknown field
    await raw.xadd(stream, {"body": b"\x80garbage\x00"})  # body only: bytes as they are
    await raw.xadd(stream, {"body": b"{}", "dc": b"lots"})  # a count that is not one
    await broker.publish(queue, b"good", message_id="g")
    consumer = await broker.consume([queue], prefetch=10)
    # When the consumer reads them
    got = [await consumer.get(2.0) for _ in range(5)]
    deliveries = [d for d in got if isinstance(d, Delivery)]
    # Then each one is a delivery; the ones of the wrong shape render every field
    assert len(deliveries) == 5
    bodies = [d.body for d in deliveries]
    assert bodies[0] == b"redis stream entry that is not an aioack message: {b'foo': b'bar'}"
    assert b"b'extra': b'\\xff\\xfe'" in bodies[1]
    assert bodies[2] == b"\x80garbage\x00"
    assert b"b'dc': b'lots'" in bodies[3]
    assert bodies[4] == b"good"
    for body in bodies[:4]:
        with pytest.raises(MalformedMessage):
            decode(body)
    # And each can be dead-lettered with its exact bytes
    for d in deliveries[:4]:
        await broker.dead_letter(d, DeadLetter(queue, "malformed", d.body, detail="bad"))
    await broker.ack(deliveries[4])
    letters = await broker.dead_letters(queue)
    assert [letter.body for letter in letters] == bodies[:4]
    assert (await broker.stats(queue)).pending == 0


async def test_due_delays_are_moved_once_however_many_consumers_poll(
    make_broker: Callable[..., RedisBroker], queue: str, broker: RedisBroker, raw: Redis
) -> None:
    await asyncio.gather(
        *(broker.publish(queue, b"%d" % i, message_id=f"m{i}", delay_s=0.2) for i in range(60))
    )
    assert (await broker.stats(queue)).delayed == 60
    brokers = [make_broker() for _ in range(4)]
    for b in brokers:
        await b.connect()
    consumers = [await b.consume([queue], prefetch=100) for b in brokers]

    async def drain(consumer_index: int) -> list[bytes]:
        consumer, b = consumers[consumer_index], brokers[consumer_index]
        bodies = []
        while (d := await consumer.get(0.6)) is not None:
            bodies.append(d.body)
            await b.ack(d)
        return bodies

    results = await asyncio.gather(*(drain(i) for i in range(4)))
    everything = sorted(body for bodies in results for body in bodies)
    assert everything == sorted(b"%d" % i for i in range(60)), "a delay was lost or doubled"
    keys = broker._io.keys(queue)
    assert await raw.exists(keys.delayed, keys.bodies) == 0


async def test_retry_with_a_delay_waits_in_the_delay_set_then_comes_back_as_a_body_only_entry(
    broker: RedisBroker, queue: str, raw: Redis
) -> None:
    await broker.publish(queue, b"attempt-1", message_id="the-id")
    [(_, published)] = await raw.xrange(broker._io.keys(queue).stream)
    assert published == {b"body": b"attempt-1"}, "the message id lives in the body only"
    consumer = await broker.consume([queue], prefetch=1)
    first = await consumer.get(2.0)
    assert first is not None
    await broker.retry(first, b"attempt-2", delay_s=0.3)
    assert await raw.zcard(broker._io.keys(queue).delayed) == 1
    copy = await consumer.get(2.0)
    assert copy is not None and (copy.body, copy.delivery_count) == (b"attempt-2", 1)
    [(_, fields)] = await raw.xrange(broker._io.keys(queue).stream)
    assert fields == {b"body": b"attempt-2"}
    await broker.ack(copy)


async def test_an_entry_written_by_an_earlier_version_with_an_id_field_still_runs_and_retries(
    broker: RedisBroker, queue: str, raw: Redis
) -> None:
    stream = broker._io.keys(queue).stream
    await broker.publish(queue, b"warm-up", message_id="w")  # makes the stream and its group
    consumer = await broker.consume([queue], prefetch=1)
    warm = await consumer.get(2.0)
    assert warm is not None
    await broker.ack(warm)
    await raw.xadd(stream, {"body": b"old-1", "id": "old-id"})
    old = await consumer.get(2.0)
    assert old is not None and old.body == b"old-1" and old.malformed is None
    await broker.retry(old, b"old-2", delay_s=0.2)
    [token] = await raw.zrange(broker._io.keys(queue).delayed, 0, -1)
    assert token.endswith(b":old-id")
    copy = await consumer.get(2.0)
    assert copy is not None and (copy.body, copy.delivery_count) == (b"old-2", 1)
    await broker.ack(copy)


async def test_concurrent_acks_share_one_round_trip(
    broker: RedisBroker, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await broker.publish_many(queue, [(f"m{i}", b"x") for i in range(50)])
    consumer = await broker.consume([queue], prefetch=50)
    held = [await consumer.get(2.0) for _ in range(50)]
    batches: list[int] = []
    real = broker._io.eval_many

    async def counting(calls):  # type: ignore[no-untyped-def]
        batches.append(len(calls))
        return await real(calls)

    monkeypatch.setattr(broker._io, "eval_many", counting)
    await asyncio.gather(*(broker.ack(d) for d in held if d is not None))
    assert batches == [1], "50 acks from one consumer should be one script call"
    assert (await broker.stats(queue)).pending == 0


async def test_acked_entries_are_deleted_and_unacked_ones_kept(
    broker: RedisBroker, queue: str, raw: Redis
) -> None:
    await broker.publish_many(queue, [("a", b"a"), ("b", b"b")])
    consumer = await broker.consume([queue], prefetch=2)
    a, b = await consumer.get(2.0), await consumer.get(2.0)
    assert a is not None and b is not None
    await broker.ack(a)
    entries = await raw.xrange(broker._io.keys(queue).stream)
    assert [fields[b"body"] for _, fields in entries] == [b"b"]
    await broker.ack(b)


async def test_closing_a_consumer_removes_it_from_the_group(
    broker: RedisBroker, queue: str, raw: Redis
) -> None:
    await broker.publish(queue, b"x", message_id="x")
    consumer = await broker.consume([queue], prefetch=1)
    assert await consumer.get(2.0) is not None
    await consumer.close()
    names = [c["name"] for c in await raw.xinfo_consumers(broker._io.keys(queue).stream, "aioack")]
    assert consumer.name.encode() not in names  # type: ignore[attr-defined]
    assert (await broker.stats(queue)).ready == 1


async def test_delete_removes_every_key_of_the_queue(
    broker: RedisBroker, queue: str, raw: Redis
) -> None:
    await broker.publish(queue, b"now", message_id="1")
    await broker.publish(queue, b"later", message_id="2", delay_s=60)
    await broker.add_dead_letter(DeadLetter(queue, "failed", b"{}"))
    keys = broker._io.keys(queue)
    assert await raw.exists(keys.stream, keys.delayed, keys.bodies, keys.dead) == 4
    await broker.delete([queue])
    assert await raw.exists(keys.stream, keys.delayed, keys.bodies, keys.dead) == 0
    stats = await broker.stats(queue)
    assert (stats.pending, stats.dead) == (0, 0)


async def test_a_read_packs_a_batch_of_body_only_entries_and_sends_a_mixed_one_whole(
    broker: RedisBroker, queue: str, raw: Redis
) -> None:
    stream = broker._io.keys(queue).stream
    odd = b"with spaces 12 34 \x00\xff and a newline\n"
    for body in (b"a", b"", odd):
        await broker.publish(queue, body, message_id="m")
    # A batch of body-only entries: one string, every body exact
    [(name, packed)] = await broker._io.eval("fetch", [stream], [broker._io.group, "probe", 10])
    assert name == stream.encode() and isinstance(packed, bytes)
    assert [body for _, body in unpack_bodies(packed)] == [b"a", b"", odd]
    # A batch with any other entry: each entry with its fields, in stream order
    await raw.xadd(stream, {"body": b"b", "dc": b"2"})  # a requeued copy: 2 deliveries so far
    await broker.publish(queue, b"c", message_id="c")
    [(_, flat)] = await broker._io.eval("fetch", [stream], [broker._io.group, "probe", 10])
    assert [flat[1], flat[3]] == [[b"body", b"b", b"dc", b"2"], [b"body", b"c"]]
    await raw.xgroup_setid(stream, broker._io.group, "0")  # read them all again, as a consumer
    consumer = await broker.consume([queue], prefetch=10)
    got = [await consumer.get(2.0) for _ in range(5)]
    assert [(d.body, d.delivery_count, d.redelivered) for d in got if d is not None] == [
        (b"a", 1, False),
        (b"", 1, False),
        (odd, 1, False),
        (b"b", 3, True),
        (b"c", 1, False),
    ]
    for delivery in got:
        assert delivery is not None
        await broker.ack(delivery)
