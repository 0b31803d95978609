"""Unique enqueue on every broker: one publish per key and window, however many producers race.

Every count here is of messages *on the broker* (its stats, then the bodies
drained back out), not of what the producers were told: a duplicate publish
shows as a second message even if every caller got the same id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from aioack import App, ConfigurationError, QueueFull, QueueLimit
from aioack.brokers import Broker
from aioack.message import decode
from aioack.results import ResultBackend
from tests.conftest import make_broker, same_store
from tests.support import unique, wait_until

pytestmark = pytest.mark.contract

PRODUCERS = 50

#: Builds one more producer App on the same broker and result store.
ProducerFactory = Callable[[], App]


@pytest.fixture
async def producer(
    broker_kind: str, broker: Broker, results: ResultBackend
) -> AsyncIterator[ProducerFactory]:
    """Separate Apps (broker and result connections of their own) for the producers,
    so that they race through separate connections, as separate processes would.
    Memory has no connections: its producers share the broker and the store."""
    made: list[App] = []

    def make() -> App:
        if broker_kind == "memory":
            return App(broker=broker, results=results)
        app = App(broker=make_broker(broker_kind), results=same_store(results))
        made.append(app)
        return app

    yield make
    await asyncio.gather(*(app.aclose() for app in made))


def _register(app: App, queue: str) -> None:
    @app.task(queue=queue, name="tests.unique.report")
    async def report(account: str) -> str:
        return account


async def _drained_ids(broker: Broker, queue: str, expected: int) -> list[str]:
    """Take every message off ``queue``: their task ids, in order.

    Waits up to 10 s for each of the ``expected`` ones, then briefly for one
    more, so a duplicate shows up instead of being left behind.
    """
    consumer = await broker.consume([queue], prefetch=100)
    ids = []
    while (delivery := await consumer.get(10.0 if len(ids) < expected else 0.3)) is not None:
        ids.append(decode(delivery.body).id)
        await broker.ack(delivery)
    await consumer.close()
    return ids


async def test_fifty_producers_of_one_key_publish_once(
    broker: Broker, new_queue: Callable[[], str], producer: ProducerFactory
) -> None:
    queue = new_queue()
    apps = [producer() for _ in range(PRODUCERS)]
    for app in apps:
        _register(app, queue)
        await app.connect()  # connected first: the publishes race, not the connects
    handles = await asyncio.gather(
        *(app.tasks["tests.unique.report"].apply_async(("acct-1",), unique_for=60) for app in apps)
    )
    ready = (await broker.stats(queue)).ready
    assert ready == 1, f"{PRODUCERS} producers of one key left {ready} messages on the broker"
    ids = {handle.id for handle in handles}
    assert len(ids) == 1, f"{PRODUCERS} producers of one key got {len(ids)} different ids"
    assert await _drained_ids(broker, queue, 1) == [ids.pop()]


async def test_other_keys_publish_separately(
    broker: Broker, new_queue: Callable[[], str], producer: ProducerFactory
) -> None:
    queue = new_queue()
    app = producer()
    _register(app, queue)
    report = app.tasks["tests.unique.report"]
    by_args = [await report.apply_async((acct,), unique_for=60) for acct in ("a", "b", "a")]
    by_key = [await report.apply_async(("c",), unique_for=60, unique_key=k) for k in "xyx"]
    # Same explicit key as above, another task: keys are scoped by task name.
    other = await app.task(queue=queue, name="tests.unique.other")(_echo).apply_async(
        ("c",), unique_for=60, unique_key="x"
    )
    assert by_args[0].id == by_args[2].id != by_args[1].id
    assert by_key[0].id == by_key[2].id != by_key[1].id
    published = [by_args[0].id, by_args[1].id, by_key[0].id, by_key[1].id, other.id]
    assert len(set(published)) == 5
    assert sorted(await _drained_ids(broker, queue, 5)) == sorted(published)


async def _echo(value: str) -> str:
    return value


async def test_a_given_task_id_gets_the_holders_id_when_the_key_is_held(
    broker: Broker, new_queue: Callable[[], str], producer: ProducerFactory
) -> None:
    queue = new_queue()
    app = producer()
    _register(app, queue)
    report = app.tasks["tests.unique.report"]
    first = await report.apply_async(("a",), unique_for=60, task_id=unique("first"))
    second = await report.apply_async(("a",), unique_for=60, task_id=unique("second"))
    assert second.id == first.id
    assert await _drained_ids(broker, queue, 1) == [first.id]


async def test_after_the_window_the_next_publish_goes_through(
    broker: Broker, new_queue: Callable[[], str], producer: ProducerFactory
) -> None:
    queue = new_queue()
    app = producer()
    _register(app, queue)
    report = app.tasks["tests.unique.report"]
    first = await report.apply_async(("a",), unique_for=1.0)
    assert (await report.apply_async(("a",), unique_for=1.0)).id == first.id
    later: list[str] = []

    async def published_again() -> bool:
        handle = await report.apply_async(("a",), unique_for=1.0)
        later.append(handle.id)
        return handle.id != first.id

    await wait_until(published_again, timeout=10, interval=0.1, message="the window to end")
    assert await _drained_ids(broker, queue, 2) == [first.id, later[-1]]


async def test_a_failed_publish_frees_the_key(
    broker_kind: str, broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    limits = {queue: QueueLimit(max_length=1)}
    app = (
        App(broker=broker, results=results, queue_limits=limits)
        if broker_kind == "memory"
        else App(broker=make_broker(broker_kind), results=same_store(results), queue_limits=limits)
    )
    try:
        _register(app, queue)
        report = app.tasks["tests.unique.report"]
        filler = []
        with pytest.raises(QueueFull):  # fill the queue until it refuses
            for i in range(5):
                filler.append((await report.apply_async((f"fill-{i}",))).id)
        with pytest.raises(QueueFull):
            await report.apply_async(("a",), unique_for=60)
        # Drained through the App's broker: RabbitMQ declares the queue with its limit.
        assert sorted(await _drained_ids(app.broker, queue, len(filler))) == sorted(filler)
        # The refused publish did not keep the key: this one goes through.
        again = await report.apply_async(("a",), unique_for=60)
        assert await _drained_ids(app.broker, queue, 1) == [again.id]
    finally:
        if broker_kind != "memory":
            await app.aclose()


async def test_bad_unique_options_fail_at_the_call_site_and_publish_nothing(
    broker: Broker,
    results: ResultBackend,
    new_queue: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = new_queue()
    app = App(broker=broker, results=results)
    _register(app, queue)
    report = app.tasks["tests.unique.report"]
    with pytest.raises(ValueError, match="unique_key needs unique_for"):
        await report.apply_async(("a",), unique_key="k")
    for window in (0, -1, float("nan"), 31 * 86_400):
        with pytest.raises(ValueError, match="unique_for must be"):
            await report.apply_async(("a",), unique_for=window)
    for key in ("", "k" * 201, "line\nbreak", "tab\there"):
        with pytest.raises(ValueError, match="unique_key must be"):
            await report.apply_async(("a",), unique_for=60, unique_key=key)
    monkeypatch.delenv("AIOACK_RESULTS_URL", raising=False)
    no_results = App(broker=broker)
    _register(no_results, queue)
    with pytest.raises(ConfigurationError, match=r"App\(results="):
        await no_results.tasks["tests.unique.report"].apply_async(("a",), unique_for=60)
    await broker.declare([queue])
    assert (await broker.stats(queue)).ready == 0
    # None of the refused calls reserved its key: the first good call publishes.
    good = await report.apply_async(("a",), unique_for=60, unique_key="k")
    assert await _drained_ids(broker, queue, 1) == [good.id]
