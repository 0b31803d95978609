"""RabbitMQ-specific behaviour the contract suite cannot see, against a real RabbitMQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from aioack.brokers import DeadLetter, Delivery, broker_from_url
from aioack.brokers.rabbitmq import RabbitMQBroker
from aioack.brokers.rabbitmq.delays import (
    chain_binding,
    delay_ms,
    level_binding,
    levels_of,
    routing_key,
)
from aioack.errors import (
    AioackError,
    BrokerUnavailable,
    ConfigurationError,
    PublishFailed,
    StaleDelivery,
)
from tests.proxy import TcpProxy
from tests.support import unique, wait_until

GOT = 5.0


async def _get(consumer: object, timeout_s: float = GOT) -> Delivery:
    delivery = await consumer.get(timeout_s)  # type: ignore[attr-defined]
    assert isinstance(delivery, Delivery), "expected a delivery, got none"
    return delivery


# -- options -------------------------------------------------------------------


def test_url_query_and_keywords_become_validated_options() -> None:
    broker = broker_from_url(
        "amqp://guest:guest@127.0.0.1:5672/?queue_type=classic&delivery_limit=5",
        publish_timeout_s=2.5,
    )
    assert isinstance(broker, RabbitMQBroker)
    opts = broker.options
    assert (opts.queue_type, opts.delivery_limit, opts.publish_timeout_s) == ("classic", 5, 2.5)


def test_a_typo_in_an_option_is_refused_with_the_right_name() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'queue_type'"):
        broker_from_url("amqp://127.0.0.1/?queu_type=classic")
    with pytest.raises(ConfigurationError, match="delivery_limit"):
        RabbitMQBroker.from_url("amqp://127.0.0.1/", delivery_limit=-1)
    with pytest.raises(ConfigurationError, match="queue_type"):
        RabbitMQBroker.from_url("amqp://127.0.0.1/", queue_type="lazy")


@pytest.mark.parametrize(
    ("delay_s", "ms", "levels"),
    [
        (0.0001, 1, [0]),
        (0.3, 300, [8, 5, 3, 2]),
        (1.0, 1000, [9, 8, 7, 6, 5, 3]),
        (1.2345, 1235, [10, 7, 6, 4, 1, 0]),
        (49 * 86400.0, 4_233_600_000, [31, 30, 29, 28, 27, 26, 22, 20, 18, 17, 16, 15, 12, 11, 10]),
    ],
)
def test_a_delay_is_whole_milliseconds_rounded_up_through_one_level_per_set_bit(
    delay_s: float, ms: int, levels: list[int]
) -> None:
    assert delay_ms(delay_s) == ms and ms / 1000 >= delay_s
    assert levels_of(ms) == levels
    assert sum(2**k for k in levels) == ms, "the levels' TTLs add up to the delay exactly"


def test_a_delay_past_amqps_ttl_limit_is_refused() -> None:
    with pytest.raises(PublishFailed, match="49 days"):
        delay_ms(50 * 86400.0)


def test_level_bindings_match_exactly_one_queue_even_with_dots_in_names() -> None:
    key = routing_key("a.b", 0b101)
    assert key.split(".")[-2:] == ["a", "b"] and key.count(".") == 33
    # A topic binding is a pattern: '*' one word; here no '#', so "x.a.b" cannot match "a.b".
    assert level_binding("a.b", 2).split(".") == ["*"] * 29 + ["1", "*", "*", "a", "b"]
    assert chain_binding(0).split(".") == ["*"] * 31 + ["0", "#"]


async def test_preflight_warns_when_a_time_limit_is_not_below_the_consumer_timeout(
    make_rabbit: Callable[..., RabbitMQBroker],
) -> None:
    broker = make_rabbit(consumer_timeout_s=60)
    warnings = await broker.preflight({"ok": 59.0, "long": 60.0, "unbounded": None})
    assert len(warnings) == 2
    assert "long" in warnings[0] and "consumer_timeout (60s)" in warnings[0]
    assert "unbounded" in warnings[1]


# -- publishing ------------------------------------------------------------------


async def test_publish_to_a_missing_queue_fails_instead_of_vanishing(
    rabbit: RabbitMQBroker,
) -> None:
    missing = unique("missing")
    with pytest.raises(PublishFailed):
        await rabbit.publish(missing, b"x", message_id="m")
    with pytest.raises(PublishFailed):
        await rabbit.publish(missing, b"x", message_id="m", delay_s=0.5)
    # The publisher channel survives a returned message.
    await rabbit.declare([missing])
    try:
        await rabbit.publish(missing, b"y", message_id="m2")
        assert (await rabbit.stats(missing)).ready == 1
    finally:
        await rabbit.delete([missing])


@pytest.mark.serial  # measures how late delays come back: nothing may run beside it
async def test_delays_come_back_on_time_in_due_order(
    rabbit: RabbitMQBroker, queue_name: str
) -> None:
    await rabbit.declare([queue_name])
    delays_s = {b"late": 1.2, b"mid": 0.7, b"soon": 0.3}
    start = time.monotonic()
    for body, delay_s in delays_s.items():
        await rabbit.publish(queue_name, body, message_id=body.decode(), delay_s=delay_s)
    assert (await rabbit.stats(queue_name)).delayed == 3
    consumer = await rabbit.consume([queue_name], prefetch=10)
    arrivals = []
    for _ in delays_s:
        delivery = await _get(consumer)
        arrivals.append((delivery.body, time.monotonic() - start))
        await rabbit.ack(delivery)
    await consumer.close()
    assert [body for body, _ in arrivals] == [b"soon", b"mid", b"late"]
    for body, elapsed_s in arrivals:
        # Documented tolerance: never early, at most +10% + 250 ms (one hop per level).
        assert delays_s[body] <= elapsed_s <= delays_s[body] * 1.1 + 0.25, (body, elapsed_s)


# -- dead letters ------------------------------------------------------------------


async def test_dead_letters_are_read_without_being_consumed(
    rabbit: RabbitMQBroker, queue_name: str
) -> None:
    await rabbit.declare([queue_name])
    for i in range(3):
        await rabbit.add_dead_letter(
            DeadLetter(queue=queue_name, reason="failed", body=b"\x80" + bytes([i]), attempt=i + 1)
        )
    first = await rabbit.dead_letters(queue_name)
    again = await rabbit.dead_letters(queue_name)
    assert [d.body for d in first] == [b"\x80\x00", b"\x80\x01", b"\x80\x02"]
    assert [d.body for d in again] == [d.body for d in first]
    assert [d.attempt for d in await rabbit.dead_letters(queue_name, limit=2)] == [1, 2]
    assert (await rabbit.stats(queue_name)).dead == 3


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
async def test_reading_dead_letters_never_reorders_them(
    make_rabbit: Callable[..., RabbitMQBroker], queue_type: str
) -> None:
    broker, queue = make_rabbit(queue_type=queue_type), unique("rq")
    await broker.connect()
    try:
        await broker.declare([queue])
        total = 130  # more than one read window (100)
        await asyncio.gather(
            *(
                broker.add_dead_letter(DeadLetter(queue=queue, reason="failed", body=b"%d" % i))
                for i in range(total)
            )
        )
        # Partial reads, smaller after larger: each once moved its part to the tail.
        for limit in (10, 10, 3, 120, 7, 29):
            read = await broker.dead_letters(queue, limit=limit)
            assert [d.body for d in read] == [b"%d" % i for i in range(limit)], limit
        everything = await broker.dead_letters(queue, limit=1000)
        assert [d.body for d in everything] == [b"%d" % i for i in range(total)]
        assert (await broker.stats(queue)).dead == total
    finally:
        await broker.delete([queue])
        await broker.aclose()


async def test_rabbitmq_dead_letters_a_crash_loop_past_its_delivery_limit(
    make_rabbit: Callable[..., RabbitMQBroker], queue_name: str
) -> None:
    broker = make_rabbit(delivery_limit=2)
    await broker.connect()
    try:
        await broker.declare([queue_name])
        await broker.publish(queue_name, b"\xffpoison", message_id="p")
        counts = []
        for _ in range(3):  # each consumer "dies" holding it: a closed channel
            consumer = await broker.consume([queue_name], prefetch=1)
            counts.append((await _get(consumer)).delivery_count)
            await consumer.close()
        assert counts == [1, 2, 3]
        await wait_until(lambda: _dead(broker, queue_name), message="a broker dead letter")
        [letter] = await broker.dead_letters(queue_name)
        assert (letter.reason, letter.body, letter.message_id) == (
            "delivery_limit",
            b"\xffpoison",
            "p",
        )
        assert letter.delivery_count == 3
        assert (await broker.stats(queue_name)).pending == 0
    finally:
        await broker.aclose()


async def _dead(broker: RabbitMQBroker, queue: str) -> bool:
    return (await broker.stats(queue)).dead == 1


# -- consumers -------------------------------------------------------------------


async def test_cancel_hands_back_buffered_deliveries_uncounted(
    rabbit: RabbitMQBroker, queue_name: str
) -> None:
    await rabbit.declare([queue_name])
    await rabbit.publish_many(queue_name, [(f"m{i}", f"{i}".encode()) for i in range(3)])
    consumer = await rabbit.consume([queue_name], prefetch=5)
    held = await _get(consumer)
    await wait_until(lambda: _unacked_on_broker(queue_name, 3), message="3 pushed")
    await consumer.cancel()
    other = await rabbit.consume([queue_name], prefetch=5)
    back = [await _get(other), await _get(other)]
    assert sorted(d.body for d in back) == [b"1", b"2"]
    assert {(d.delivery_count, d.redelivered) for d in back} == {(1, False)}
    for d in [held, *back]:
        await rabbit.ack(d)
    await other.close()
    await consumer.close()


async def _unacked_on_broker(queue: str, n: int) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_unacknowledged",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    rows = dict(line.split("\t") for line in out.decode().splitlines() if "\t" in line)
    return rows.get(queue, "").strip() == str(n)


async def test_classic_queues_count_requeues_in_a_header(
    make_rabbit: Callable[..., RabbitMQBroker], queue_name: str
) -> None:
    broker = make_rabbit(queue_type="classic")
    await broker.connect()
    try:
        await broker.declare([queue_name])
        await broker.publish(queue_name, b"c", message_id="c")
        consumer = await broker.consume([queue_name], prefetch=5)
        await broker.requeue(await _get(consumer))
        again = await _get(consumer)
        await broker.requeue(again)
        third = await _get(consumer)
        assert (again.delivery_count, third.delivery_count, third.redelivered) == (2, 3, True)
        await broker.release(third)
        released = await _get(consumer)
        assert released.delivery_count == 3
        await broker.ack(released)
        await consumer.close()
    finally:
        await broker.aclose()


async def test_redeclaring_with_another_queue_type_is_a_configuration_error(
    make_rabbit: Callable[..., RabbitMQBroker], rabbit: RabbitMQBroker, queue_name: str
) -> None:
    await rabbit.declare([queue_name])
    classic = make_rabbit(queue_type="classic")
    await classic.connect()
    try:
        with pytest.raises(ConfigurationError, match="queue_type"):
            await classic.declare([queue_name])
        await classic.publish(queue_name, b"still works", message_id="s")
    finally:
        await classic.aclose()


# -- reconnects ------------------------------------------------------------------


async def test_a_stale_delivery_after_a_reconnect_is_refused_and_sends_nothing(
    make_rabbit: Callable[..., RabbitMQBroker], proxy: TcpProxy, queue_name: str
) -> None:
    broker = make_rabbit(proxy.url())
    await broker.connect()
    try:
        await broker.declare([queue_name])
        await broker.publish(queue_name, b"a", message_id="a")
        consumer = await broker.consume([queue_name], prefetch=5)
        stale = await _get(consumer)
        proxy.cut()
        # The robust connection comes back and RabbitMQ redelivers to the new channel.
        again = await _get(consumer, 15.0)
        assert (again.body, again.redelivered, again.delivery_count) == (b"a", True, 2)
        assert await broker.extend([stale, again]) == [stale]
        with pytest.raises(StaleDelivery):
            await broker.ack(stale)
        with pytest.raises(StaleDelivery):
            await broker.retry(stale, b"copy", delay_s=0)
        # Nothing reached the new channel: it still settles and delivers.
        await broker.ack(again)
        await broker.publish(queue_name, b"b", message_id="b")
        fresh = await _get(consumer)
        assert (fresh.body, fresh.delivery_count) == (b"b", 1)
        await broker.ack(fresh)
        assert (await broker.stats(queue_name)).pending == 0
        # A PRECONDITION_FAILED would have closed that channel and opened another.
        assert fresh.handle.channel is again.handle.channel  # type: ignore[attr-defined]
        assert not fresh.handle.channel.is_closed  # type: ignore[attr-defined]
        await consumer.close()
    finally:
        await broker.aclose()


async def test_no_client_exception_escapes_an_outage(
    make_rabbit: Callable[..., RabbitMQBroker], proxy: TcpProxy, queue_name: str
) -> None:
    with pytest.raises(BrokerUnavailable):
        await make_rabbit("amqp://guest:guest@127.0.0.1:1/").connect()
    with pytest.raises(BrokerUnavailable):
        await make_rabbit().publish(queue_name, b"x", message_id="x")
    broker = make_rabbit(proxy.url(), publish_timeout_s=0.5, reconnect_interval_s=0.1)
    await broker.connect()
    try:
        await broker.declare([queue_name])
        await broker.publish(queue_name, b"held", message_id="h")
        consumer = await broker.consume([queue_name], prefetch=2)
        held = await _get(consumer)
        proxy.refuse()
        calls = {
            "publish": broker.publish(queue_name, b"x", message_id="x"),
            "delayed publish": broker.publish(queue_name, b"x", message_id="x", delay_s=3),
            "declare": broker.declare([queue_name]),
            "stats": broker.stats(queue_name),
            "dead_letters": broker.dead_letters(queue_name),
            "add_dead_letter": broker.add_dead_letter(DeadLetter(queue_name, "failed", b"")),
            "get": consumer.get(0.3),
            "ack": broker.ack(held),
            "consume": broker.consume([queue_name], prefetch=1),
            "delete": broker.delete([unique("never")]),
        }
        for name, call in calls.items():
            try:
                await asyncio.wait_for(call, 5.0)
            except AioackError:
                continue  # translated: BrokerUnavailable, StaleDelivery, ...
            except BaseException as exc:  # pragma: no cover - the failure being tested
                pytest.fail(f"{name} let {type(exc).__module__}.{type(exc).__name__} escape")
            pytest.fail(f"{name} succeeded during an outage")
        assert await broker.extend([held]) == [held]
        proxy.accept()
        await wait_until(broker._is_connected, timeout=10, message="reconnect")
        await consumer.close()
    finally:
        await broker.aclose()
