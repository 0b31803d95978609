"""RabbitMQ dead-letter passes: ids that hold across reads, order kept, reach, back-to-back reads.

AMQP cannot read a message in place or remove one by id: a pass consumes
``q.dead`` holding what it reads (aioack/brokers/rabbitmq/letters.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from aioack.brokers import DeadLetter, Delivery, LetterFilter
from aioack.brokers.deadletters import replay_copy
from aioack.brokers.rabbitmq import RabbitMQBroker
from aioack.brokers.rabbitmq import letters as letter_pass
from aioack.brokers.rabbitmq import topology as topo
from aioack.errors import PublishFailed
from aioack.message import Message, decode
from tests.support import unique, wait_until


async def _fill(
    broker: RabbitMQBroker, queue: str, bodies: list[bytes], reason: str = "failed"
) -> None:
    for body in bodies:  # one by one: the order is what the tests look at
        await broker.add_dead_letter(DeadLetter(queue=queue, reason=reason, body=body))


async def test_back_to_back_reads_each_see_every_letter(
    rabbit: RabbitMQBroker, queue_name: str
) -> None:
    # A quorum queue takes a closed channel's letters back a few ms after the
    # close: before the pass waited for that, about one read in ten (one in
    # three under load) right after another saw fewer letters, or none.
    await rabbit.declare([queue_name])
    bodies = [b"%02d" % i for i in range(50)]
    await _fill(rabbit, queue_name, bodies)
    for _ in range(100):
        assert [d.body for d in await rabbit.dead_letters(queue_name)] == bodies


async def test_a_letter_rabbitmq_dead_lettered_itself_has_an_id_that_holds(
    make_rabbit: Callable[..., RabbitMQBroker], queue_name: str
) -> None:
    broker = make_rabbit(delivery_limit=1)
    await broker.connect()
    try:
        await broker.declare([queue_name])
        await broker.publish(queue_name, b"\xffpoison", message_id="p")
        for _ in range(2):  # each consumer "dies" holding it: RabbitMQ counts a return
            consumer = await broker.consume([queue_name], prefetch=1)
            assert isinstance(await consumer.get(5.0), Delivery)
            await consumer.close()

        async def dead() -> bool:
            return (await broker.stats(queue_name)).dead == 1

        await wait_until(dead, message="RabbitMQ's own dead letter")
        [letter] = await broker.dead_letters(queue_name)
        assert letter.reason == "delivery_limit" and letter.id and letter.id.startswith("h")
        assert [d.id for d in await broker.dead_letters(queue_name)] == [letter.id]
        assert await broker.get_dead_letter(queue_name, letter.id) == letter
        assert await broker.replay_dead_letters(queue_name, LetterFilter(ids=[letter.id])) == 1
        consumer = await broker.consume([queue_name], prefetch=1)
        copy = await consumer.get(5.0)
        assert copy is not None and (copy.body, copy.delivery_count) == (b"\xffpoison", 1)
        await broker.ack(copy)
        await consumer.close()
    finally:
        await broker.delete([queue_name])
        await broker.aclose()


async def test_a_forged_letter_id_header_is_not_trusted(
    rabbit: RabbitMQBroker, queue_name: str
) -> None:
    await rabbit.declare([queue_name])
    stored = topo.letter_headers(DeadLetter(queue=queue_name, reason="failed", body=b"x"))
    forged = {**stored, topo.H_LETTER_ID: "1\n2"}
    await rabbit._publish(queue_name, b"x", "m", forged, 0.0, routing_key=f"{queue_name}.dead")
    await rabbit._publish(queue_name, b"y", "n", stored, 0.0, routing_key=f"{queue_name}.dead")
    first, second = await rabbit.dead_letters(queue_name)
    assert second.id == stored[topo.H_LETTER_ID]
    assert first.id is not None and first.id.startswith("h") and first.id.isalnum()


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
async def test_passes_keep_the_order_of_letters_they_leave(
    make_rabbit: Callable[..., RabbitMQBroker], queue_type: str
) -> None:
    broker, queue = make_rabbit(queue_type=queue_type), unique("rq")
    await broker.connect()
    try:
        await broker.declare([queue])
        bodies = [b"%03d" % i for i in range(150)]
        await _fill(broker, queue, bodies)
        every_third = LetterFilter(
            ids=[d.id for d in (await broker.dead_letters(queue, 150))[::3] if d.id]
        )
        assert await broker.purge_dead_letters(queue, every_third, batch_size=7) == 50
        assert await broker.dead_letters(queue, 5) != []  # a short read between
        kept = [body for i, body in enumerate(bodies) if i % 3]
        assert [d.body for d in await broker.dead_letters(queue, 1000)] == kept
    finally:
        await broker.delete([queue])
        await broker.aclose()


async def test_a_pass_reaches_past_its_window_only_by_removing_letters(
    rabbit: RabbitMQBroker, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a window of 20: a filtered pass can look past 20 letters it leaves
    # in place, no more (documented); "all" frees a place for each letter.
    monkeypatch.setattr(letter_pass, "MAX_LETTER_WINDOW", 20)
    monkeypatch.setattr(letter_pass, "DEAD_LETTER_WINDOW", 20)
    await rabbit.declare([queue_name])
    await _fill(rabbit, queue_name, [b"keep"] * 30, reason="timeout")
    await _fill(rabbit, queue_name, [b"drop"] * 10, reason="failed")
    failed = LetterFilter(reasons=["failed"])
    assert await rabbit.purge_dead_letters(queue_name, failed) == 0  # behind 30 it keeps
    assert len(await rabbit.dead_letters(queue_name, 100, where=failed)) == 0
    assert await rabbit.replay_dead_letters(queue_name, LetterFilter()) == 40
    assert (await rabbit.stats(queue_name)).dead == 0


async def test_a_pass_does_not_wait_for_letters_another_pass_holds(
    rabbit: RabbitMQBroker, queue_name: str
) -> None:
    await rabbit.declare([queue_name])
    await _fill(rabbit, queue_name, [b"a", b"b"])
    async with await rabbit._letter_pass(queue_name, 10) as holder:
        assert len(await holder.next_batch()) == 2
        started = asyncio.get_running_loop().time()
        assert await rabbit.dead_letters(queue_name) == []  # both held by the other pass
        assert asyncio.get_running_loop().time() - started < 2.0  # not the 10 s timeout
    assert len(await rabbit.dead_letters(queue_name)) == 2


async def test_a_replay_batch_partly_refused_removes_exactly_the_confirmed_letters(
    rabbit: RabbitMQBroker, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Copies of a batch are published at once; one refused must not keep the
    # letters of the others (they would be queued and dead letters: duplicates).
    await rabbit.declare([queue_name])
    ids = [f"l{n}" for n in range(5)]
    for mid in ids:
        body = Message(id=mid, task="t").encode()
        await rabbit.add_dead_letter(
            DeadLetter(queue=queue_name, reason="failed", body=body, message_id=mid)
        )
    publish = rabbit._publish

    async def refuse_l2(queue: str, body: bytes, message_id: str, *args: Any, **kw: Any) -> None:
        if message_id == "l2":
            raise PublishFailed("refused for the test")
        await publish(queue, body, message_id, *args, **kw)

    monkeypatch.setattr(rabbit, "_publish", refuse_l2)
    async with await rabbit._letter_pass(queue_name, 5) as letters:
        held: list[DeadLetter] = []
        while len(held) < 5:  # the whole batch, however the letters arrive
            held += await letters.next_batch()
        with pytest.raises(PublishFailed):
            await letters.replay([(letter, *replay_copy(letter)) for letter in held])
    monkeypatch.undo()
    dead = [d.message_id for d in await rabbit.dead_letters(queue_name)]
    consumer = await rabbit.consume([queue_name], prefetch=10)
    queued = []
    while (delivery := await consumer.get(0.5)) is not None:
        queued.append(decode(delivery.body).id)
        await rabbit.ack(delivery)
    await consumer.close()
    assert (dead, sorted(queued)) == (["l2"], ["l0", "l1", "l3", "l4"])


async def test_letters_a_pass_acked_never_come_back_when_it_ends(
    rabbit: RabbitMQBroker, queue_name: str
) -> None:
    # A quorum queue may give a closed channel's letters back before it applies
    # the acks sent just before the close: measured, one pass in three or four
    # here left letters it had purged (and a replay would leave duplicates).
    await rabbit.declare([queue_name])
    for _ in range(40):
        await asyncio.gather(
            *(
                rabbit.add_dead_letter(DeadLetter(queue=queue_name, reason="failed", body=b"x"))
                for _ in range(100)
            )
        )
        assert await rabbit.purge_dead_letters(queue_name, LetterFilter()) == 100
        assert (await rabbit.stats(queue_name)).dead == 0
