"""Redis going away, commands cancelled mid-flight, settings refused: the boundary holds."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.exceptions

from aioack.brokers import DeadLetter, Delivery, broker_from_url
from aioack.brokers.redis import RedisBroker
from aioack.errors import AioackError, BrokerUnavailable, ConfigurationError
from tests.proxy import TcpProxy
from tests.redis.servers import OwnRedis, free_port
from tests.support import unique, wait_until


def _every_method(
    broker: RedisBroker, queue: str, delivery: Delivery | None
) -> dict[str, Callable[[], Awaitable[Any]]]:
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "declare": lambda: broker.declare([queue]),
        "publish": lambda: broker.publish(queue, b"x", message_id="x"),
        "publish delayed": lambda: broker.publish(queue, b"x", message_id="x", delay_s=5),
        "publish_many": lambda: broker.publish_many(queue, [("a", b"a"), ("b", b"b")]),
        "consume": lambda: broker.consume([queue], prefetch=1),
        "add_dead_letter": lambda: broker.add_dead_letter(DeadLetter(queue, "failed", b"")),
        "dead_letters": lambda: broker.dead_letters(queue),
        "stats": lambda: broker.stats(queue),
        "delete": lambda: broker.delete([queue]),
        "preflight": lambda: broker.preflight({"t": 1.0}),
    }
    if delivery is not None:
        calls["extend"] = lambda: broker.extend([delivery])
        calls["ack"] = lambda: broker.ack(delivery)
    return calls


async def test_no_redis_exception_escapes_when_redis_is_unreachable(
    make_broker: Callable[..., RedisBroker],
) -> None:
    broker = make_broker(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    for name, call in _every_method(broker, "q", None).items():
        with pytest.raises(AioackError):
            await call()
            pytest.fail(f"{name} did not raise")
    await broker.aclose()  # never raises


async def test_an_outage_is_broker_unavailable_everywhere_and_get_recovers_after_it(
    make_broker: Callable[..., RedisBroker], own_redis: OwnRedis
) -> None:
    broker = make_broker(own_redis.url, connect_timeout=0.5, socket_timeout=2.0)
    await broker.connect()
    queue = unique("rq")
    await broker.publish(queue, b"before", message_id="1")
    consumer = await broker.consume([queue], prefetch=5)
    held = await consumer.get(2.0)
    assert held is not None
    # When Redis dies
    own_redis.kill()
    for name, call in _every_method(broker, queue, held).items():
        try:
            await call()
        except BrokerUnavailable:
            continue
        except Exception as exc:  # the point: what else could escape?
            pytest.fail(f"{name} raised {type(exc).__name__} from Redis: {exc!r}")
        pytest.fail(f"{name} returned although Redis is down")
    with pytest.raises(BrokerUnavailable):
        await consumer.get(0.1)
    # Then once it is back (persisted with appendfsync always), get works again
    own_redis.start()
    await broker.publish(queue, b"after", message_id="2")
    bodies: list[bytes] = []

    async def got_after() -> bool:
        try:
            delivery = await consumer.get(0.1)
        except BrokerUnavailable:
            return False
        if delivery is not None:
            bodies.append(delivery.body)
        return b"after" in bodies

    await wait_until(got_after, timeout=5.0, message="a delivery after the restart")
    await broker.delete([queue])


async def test_commands_cancelled_mid_flight_leave_the_pool_answering_correctly(
    make_broker: Callable[..., RedisBroker], delay_proxy: TcpProxy
) -> None:
    """Fault 8 at the broker level: each reply is slowed 10 ms so cancels land mid-command."""
    broker = make_broker(delay_proxy.url())
    await broker.connect()
    queues = [unique("rq") for _ in range(4)]
    for n, queue in enumerate(queues):  # queue n holds n + 1 ready messages
        await broker.publish_many(queue, [(f"{n}-{i}", b"%d" % n) for i in range(n + 1)])
    consumer = await broker.consume([queues[0]], prefetch=1)
    rng = random.Random(8)
    cancelled = 0
    for _ in range(40):
        queue = rng.choice(queues)
        operations: list[Callable[[], Awaitable[object]]] = [
            lambda q=queue: broker.stats(q),  # type: ignore[misc]
            lambda: consumer.get(0.05),
            lambda q=queue: broker.dead_letters(q),  # type: ignore[misc]
        ]
        task = asyncio.ensure_future(rng.choice(operations)())
        await asyncio.sleep(rng.uniform(0.0, 0.012))
        if task.cancel():
            cancelled += 1
        results = await asyncio.gather(task, return_exceptions=True)
        if isinstance(results[0], Delivery):
            await broker.release(results[0])
        # Then the very next command on the same pool gets its own answer
        for n, q in enumerate(queues[1:], start=1):
            assert (await broker.stats(q)).ready == n + 1
    assert cancelled > 10, "the test did not cancel commands mid-flight"
    held = await consumer.get(2.0)
    assert held is not None and held.body == b"0"
    await broker.ack(held)
    await broker.delete(queues)


def test_options_come_from_the_url_query_or_keywords() -> None:
    broker = broker_from_url("redis://127.0.0.1:6379/0?visibility_timeout=12&db=3")
    assert isinstance(broker, RedisBroker)
    assert broker.options.visibility_timeout == 12.0
    assert broker.lease_check_interval_s == pytest.approx(4.0)
    assert broker._io._url.endswith("/0?db=3")
    keyword = RedisBroker.from_url("redis://h/0?visibility_timeout=12", visibility_timeout=6)
    assert keyword.options.visibility_timeout == 6.0
    for url in ("rediss://h:6380/0", "unix:///tmp/redis.sock?db=1"):
        assert isinstance(broker_from_url(url), RedisBroker)


@pytest.mark.parametrize(
    ("url", "options", "says"),
    [
        ("redis://h/0?visibilty_timeout=5", {}, "did you mean 'visibility_timeout'"),
        ("redis://h/0", {"visibility_timeout": -1}, "greater than 0"),
        ("redis://h/0?visibility_timeout=soon", {}, "visibility_timeout"),
        ("redis://h/0", {"poll_interval": 20}, "below socket_timeout"),
        ("redis://h/0", {"prefetch": 5}, "unknown Redis broker option 'prefetch'"),
    ],
)
def test_bad_options_are_refused_with_what_to_change(
    url: str, options: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        RedisBroker.from_url(url, **options)


async def test_preflight_warns_about_unsafe_redis_settings(broker: RedisBroker) -> None:
    config = await broker._io.client.config_get("appendonly")
    warnings = await broker.preflight({"t": None})
    if config.get("appendonly") in (b"no", "no"):
        assert any("persist" in w for w in warnings)


async def test_preflight_refuses_time_limits_no_lease_covers(
    make_broker: Callable[..., RedisBroker],
) -> None:
    renewing = make_broker(visibility_timeout=5)
    await renewing.connect()
    await renewing.preflight({"long": 60.0, "unbounded": None})  # renewal covers both
    fixed = make_broker(visibility_timeout=5, renew_leases=False)
    await fixed.connect()
    await fixed.preflight({"short": 4.0})
    with pytest.raises(ConfigurationError, match="time_limit must be below"):
        await fixed.preflight({"short": 4.0, "long": 5.0})
    with pytest.raises(ConfigurationError, match="unbounded"):
        await fixed.preflight({"unbounded": None})


async def test_every_cancel_of_a_waiting_get_raises(broker: RedisBroker, queue: str) -> None:
    """Cancels land at random points of an empty queue's get(); none may be lost.

    redis-py loses 1-2% of the cancels landing there (the call returns
    normally); the consumer raises them instead, or a worker would never stop.
    """
    consumer = await broker.consume([queue], prefetch=10)
    rng, lost = random.Random(7), 0
    try:
        for _ in range(300):
            waiting = asyncio.create_task(consumer.get(1.0))
            await asyncio.sleep(rng.uniform(0, 0.03))
            if not waiting.cancel():
                continue  # it finished first: nothing to lose
            try:
                await asyncio.wait_for(asyncio.shield(waiting), 2.0)
                lost += 1
            except asyncio.CancelledError:
                pass
    finally:
        await consumer.close()
    assert lost == 0, f"{lost} of 300 cancels were swallowed"
