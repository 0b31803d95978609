"""Batch enqueue on every broker: ``task.map()`` and ``app.publish_many()``.

Each test counts what the broker holds (stats, then the messages drained
back out and decoded), not what the call returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from aioack import App, InvalidArguments, QueueFull, QueueLimit
from aioack.brokers import Broker, Consumer
from aioack.message import Message, decode

pytestmark = pytest.mark.contract


async def _drain(broker: Broker, queues: list[str], timeout_s: float = 1.0) -> list[Message]:
    consumer: Consumer = await broker.consume(queues, prefetch=100)
    messages = []
    try:
        while (delivery := await consumer.get(timeout_s)) is not None:
            messages.append(decode(delivery.body))
            await broker.ack(delivery)
    finally:
        await consumer.close()
    return messages


class _Calls:
    """Counts the broker's publish calls (wrapped on the instance)."""

    def __init__(self, broker: Broker) -> None:
        self.single, self.batches = 0, 0
        publish, publish_many = broker.publish, broker.publish_many

        async def one(*args: Any, **kwargs: Any) -> None:
            self.single += 1
            await publish(*args, **kwargs)

        async def many(*args: Any, **kwargs: Any) -> None:
            self.batches += 1
            await publish_many(*args, **kwargs)

        broker.publish, broker.publish_many = one, many  # type: ignore[method-assign]


async def test_map_publishes_every_item_as_one_batch_with_the_returned_ids(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    app = App(broker=broker)

    @app.task(queue=queue)
    async def add(a: int, b: int = 0) -> int:
        return a + b

    calls = _Calls(broker)
    results = await add.map([(i, i) for i in range(40)] + [(7,)])
    assert (calls.batches, calls.single) == (1, 0), "not one broker batch"
    assert len({r.id for r in results}) == 41
    assert {r.queue for r in results} == {queue}
    held = await _drain(broker, [queue])
    assert sorted(m.id for m in held) == sorted(r.id for r in results)
    by_id = {m.id: m for m in held}
    assert [by_id[r.id].args for r in results] == [[i, i] for i in range(40)] + [[7]]
    assert {m.task for m in held} == {add.name}


@pytest.mark.parametrize(
    ("bad", "error"),
    [(("seven", 1), InvalidArguments), (7, TypeError), ((1, 2, 3), InvalidArguments)],
)
async def test_one_bad_item_fails_map_and_publishes_nothing(
    broker: Broker, new_queue: Callable[[], str], bad: object, error: type[Exception]
) -> None:
    queue = new_queue()
    app = App(broker=broker)

    @app.task(queue=queue)
    async def add(a: int, b: int) -> int:
        return a + b

    await broker.declare([queue])
    items: list[Any] = [(i, i) for i in range(20)]
    items.insert(13, bad)
    with pytest.raises(error, match="item 13"):
        await add.map(items)
    assert (await broker.stats(queue)).ready == 0
    assert await _drain(broker, [queue], timeout_s=0.3) == []


async def test_publish_many_sends_a_mixed_batch_to_each_tasks_queue(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    first, second = new_queue(), new_queue()
    app = App(broker=broker)

    @app.task(queue=first)
    async def greet(name: str, *, loud: bool = False) -> str:
        return name

    @app.task(queue=second)
    async def square(x: int) -> int:
        return x * x

    calls = _Calls(broker)
    results = await app.publish_many(
        [greet.s("ada", loud=True), square.s(3), greet.si("bob"), square.s(4)]
    )
    assert (calls.batches, calls.single) == (2, 0), "not one broker batch per queue"
    assert [r.queue for r in results] == [first, second, first, second]
    on_first, on_second = await _drain(broker, [first]), await _drain(broker, [second])
    assert [(m.id, m.args, m.kwargs) for m in on_first] == [
        (results[0].id, ["ada"], {"loud": True}),
        (results[2].id, ["bob"], {}),
    ]
    assert [(m.id, m.args) for m in on_second] == [(results[1].id, [3]), (results[3].id, [4])]


async def test_one_bad_signature_fails_publish_many_and_publishes_nothing(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    first, second = new_queue(), new_queue()
    app = App(broker=broker)

    @app.task(queue=first)
    async def greet(name: str) -> str:
        return name

    @app.task(queue=second)
    async def square(x: int) -> int:
        return x * x

    await broker.declare([first, second])
    with pytest.raises(InvalidArguments, match="item 2"):
        await app.publish_many([greet.s("ada"), square.s(3), square.s("three")])
    with pytest.raises(TypeError, match="item 1"):
        await app.publish_many([greet.s("ada"), "not a signature"])  # type: ignore[list-item]
    for queue in (first, second):
        assert (await broker.stats(queue)).ready == 0
    assert await _drain(broker, [first, second], timeout_s=0.3) == []


async def test_map_into_a_limited_queue_is_refused_when_the_batch_does_not_fit(
    broker: Broker, broker_kind: str, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    app = App(broker=broker, queue_limits={queue: QueueLimit(max_length=3)})

    @app.task(queue=queue)
    async def echo(x: int) -> int:
        return x

    taken = await echo.map([(1,), (2,)])
    with pytest.raises(QueueFull):
        await echo.map([(3,), (4,), (5,)])
    ready = (await broker.stats(queue)).ready
    if broker_kind == "rabbitmq":  # decides per message; a quorum queue may take one more
        assert 3 <= ready <= 4
    else:  # all or none: the refused batch added nothing
        assert ready == 2
        assert [m.id for m in await _drain(broker, [queue])] == [r.id for r in taken]


async def test_a_waiting_map_lands_each_message_once_when_room_is_made(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    """when_full="wait": the batch is retried until it fits, and no message twice
    (RabbitMQ retries each refused message on its own, not the whole batch)."""
    queue = new_queue()
    limit = QueueLimit(max_length=3, when_full="wait", wait_timeout=20)
    app = App(broker=broker, queue_limits={queue: limit})

    @app.task(queue=queue)
    async def echo(x: int) -> int:
        return x

    first = await echo.map([(1,), (2,), (3,)])
    waiting = asyncio.ensure_future(echo.map([(4,), (5,), (6,)]))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "a batch into a full queue did not wait"
    drained = await _drain(broker, [queue], timeout_s=0.5)
    later = await asyncio.wait_for(waiting, 20)
    drained += await _drain(broker, [queue], timeout_s=1.0)
    ids = [m.id for m in drained]
    assert sorted(ids) == sorted(r.id for r in [*first, *later]), "lost or duplicated"


async def test_a_batch_is_bounded_and_belongs_to_one_app() -> None:
    """Over 10,000 runs, or a signature of another App's task: refused before any publish."""
    app, other = App(broker="memory://"), App(broker="memory://")

    @app.task(queue="bounded")
    async def echo(x: int) -> int:
        return x

    @other.task(queue="bounded")
    async def elsewhere(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="at most 10,000"):
        await echo.map((i,) for i in range(10_001))
    with pytest.raises(ValueError, match="another App"):
        await app.publish_many([echo.s(1), elsewhere.s(2)])
    with pytest.raises(TypeError, match="iterable of items"):
        await app.publish_many("echo")  # type: ignore[arg-type]
    assert (await app.broker.stats("bounded")).ready == 0
    assert await echo.map([]) == []
