"""Queue limits without a broker: settings refused at construction, the wait
policy, the watermark rule."""

from __future__ import annotations

import time

import pytest

from aioack import App, ConfigurationError, MemoryBroker, PublishFailed, QueueFull, QueueLimit
from aioack.limits import Watermarks, check_limits, publish_bounded


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "at least one of"),
        ({"max_length": 0}, "greater than or equal to 1"),
        ({"max_length": 10, "when_full": "drop"}, "'reject' or 'wait'"),
        ({"max_length": 10, "wait_timeout": 5}, "only with when_full='wait'"),
        ({"when_full": "wait", "max_unacked": 3}, "needs a max_length"),
        ({"max_length": 10, "when_full": "wait", "wait_timeout": 0}, "greater than 0"),
        ({"max_length": 10, "length_watermark": 11}, "could never be reached"),
        ({"max_unacked": 2, "unacked_watermark": 3}, "could never be reached"),
        ({"max_lenght": 10}, "did you mean 'max_length'"),
    ],
)
def test_a_bad_limit_is_refused_when_the_app_is_made(fields: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        App("memory://", queue_limits={"emails": fields})


def test_limits_name_valid_queues() -> None:
    with pytest.raises(ConfigurationError, match="queue name"):
        check_limits({"bad queue": QueueLimit(max_length=1)})
    with pytest.raises(ConfigurationError, match="mapping"):
        check_limits([("q", QueueLimit(max_length=1))])  # type: ignore[arg-type]


def test_the_app_hands_its_limits_to_the_broker_it_uses() -> None:
    limit = QueueLimit(max_length=5, when_full="wait", wait_timeout=2.5)
    app = App("memory://", queue_limits={"emails": limit, "sms": {"max_length": 3}})
    assert app.broker.limits["emails"] is limit
    assert app.queue_limits["sms"] == QueueLimit(max_length=3)
    app.use_broker(MemoryBroker())  # the CLI's --broker: the new one gets them too
    assert app.broker.limits["emails"] is limit


def test_queue_full_is_a_publish_failure_that_names_its_queue() -> None:
    error = QueueFull("emails", 10)
    assert isinstance(error, PublishFailed)
    assert "'emails' is full (max_length=10)" in str(error)


async def test_reject_raises_at_once_and_wait_tries_again_until_room() -> None:
    tries: list[float] = []

    def full_for(n: int) -> object:
        async def publish() -> None:
            tries.append(time.monotonic())
            if len(tries) <= n:
                raise QueueFull("q", 1)

        return publish

    with pytest.raises(QueueFull):
        await publish_bounded(full_for(1), "q", QueueLimit(max_length=1))  # type: ignore[arg-type]
    assert len(tries) == 1
    tries.clear()
    waiting = QueueLimit(max_length=1, when_full="wait", wait_timeout=5)
    await publish_bounded(full_for(3), "q", waiting)  # type: ignore[arg-type]
    assert len(tries) == 4


async def test_wait_gives_up_after_wait_timeout_with_how_long_it_waited() -> None:
    async def always_full() -> None:
        raise QueueFull("q", 1)

    started = time.monotonic()
    limit = QueueLimit(max_length=1, when_full="wait", wait_timeout=0.2)
    with pytest.raises(QueueFull, match="still full after waiting") as refused:
        await publish_bounded(always_full, "q", limit)
    assert 0.2 <= refused.value.waited_s <= time.monotonic() - started


def test_a_watermark_crossing_is_reported_once_each_way() -> None:
    limit = QueueLimit(max_length=10, length_watermark=8, unacked_watermark=2)
    marks = Watermarks({"q": limit, "plain": QueueLimit(max_length=5)})
    assert marks.queues == ["q"]
    seen = [
        [(e.measure, e.count, e.above) for e in marks.observe("q", length=n, unacked=u)]
        for n, u in [(7, 0), (8, 1), (9, 2), (9, 3), (3, 1), (2, 0)]
    ]
    assert seen == [
        [],
        [("length", 8, True)],
        [("unacked", 2, True)],
        [],
        [("length", 3, False), ("unacked", 1, False)],
        [],
    ]
    assert marks.observe("plain", length=100, unacked=100) == []
