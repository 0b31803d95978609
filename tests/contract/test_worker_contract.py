"""The ack contract end to end: a real Worker on every broker.

Each test states one row of docs/ack-contract.md and checks what the broker
holds afterwards (nothing pending, the right dead letters), not just what the
task saw.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence

import pytest

from aioack import AlreadySettled, App, Reject, Retry, TaskContext
from aioack.brokers import Broker, Consumer
from aioack.message import Message
from aioack.testing import run_until_idle
from tests.support import wait_until

pytestmark = pytest.mark.contract

FAST_RETRY = {"retry_backoff": 0.01, "retry_backoff_max": 0.05}


async def _dead(broker: Broker, queue: str) -> dict[str, str]:
    """Dead letters of ``queue`` as {message id or body: reason}."""
    letters = await broker.dead_letters(queue)
    return {(d.message_id or d.body.decode("latin-1")): d.reason for d in letters}


async def _assert_drained(broker: Broker, queue: str) -> None:
    stats = await broker.stats(queue)
    assert stats.pending == 0, f"queue {queue} still holds {stats}"


async def test_returned_task_is_acked_and_gone(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, seen = new_queue(), App(broker=broker), []

    @app.task(queue=queue)
    async def add(x: int, y: int) -> int:
        seen.append(x + y)
        return x + y

    await add.delay(2, 3)
    await add.apply_async(args=(4,), kwargs={"y": 5})
    assert await run_until_idle(app, [queue]) == []
    assert sorted(seen) == [5, 9]
    await _assert_drained(broker, queue)
    assert await broker.dead_letters(queue) == []


async def test_retry_publishes_the_next_attempt_then_succeeds(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, attempts = new_queue(), App(broker=broker), []

    @app.task(queue=queue, max_retries=3, **FAST_RETRY)
    async def flaky(ctx: TaskContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise Retry()

    await flaky.delay()
    await run_until_idle(app, [queue])
    assert attempts == [1, 2, 3]
    await _assert_drained(broker, queue)


async def test_autoretry_exhausted_is_dead_lettered_with_traceback(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, attempts = new_queue(), App(broker=broker), []

    @app.task(queue=queue, autoretry_for=(ConnectionError,), max_retries=2, **FAST_RETRY)
    async def always_down(ctx: TaskContext) -> None:
        attempts.append(ctx.attempt)
        raise ConnectionError("refused")

    result = await always_down.delay()
    errors = await run_until_idle(app, [queue])
    assert attempts == [1, 2, 3]
    assert [type(e) for _, e in errors] == [ConnectionError] * 3
    [letter] = await broker.dead_letters(queue)
    assert (letter.reason, letter.message_id, letter.attempt) == ("failed", result.id, 3)
    assert letter.error == "ConnectionError: refused"
    assert letter.traceback and "always_down" in letter.traceback
    assert Message.model_validate_json(letter.body).task == always_down.name
    await _assert_drained(broker, queue)


async def test_time_limit_cancels_and_dead_letters_with_reason_timeout(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, cancelled = new_queue(), App(broker=broker), asyncio.Event()

    @app.task(queue=queue, time_limit=0.2, max_retries=0)
    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    result = await slow.delay()
    await run_until_idle(app, [queue])
    assert cancelled.is_set()
    assert await _dead(broker, queue) == {result.id: "timeout"}
    await _assert_drained(broker, queue)


async def test_reject_without_requeue_dead_letters_and_with_requeue_runs_again(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, deliveries = new_queue(), App(broker=broker), []

    @app.task(queue=queue)
    async def picky(ctx: TaskContext, requeue: bool) -> None:
        deliveries.append((requeue, ctx.delivery_count, ctx.redelivered))
        if ctx.delivery_count == 1:
            raise Reject("not now", requeue=requeue)

    dropped = await picky.delay(False)
    await picky.delay(True)
    await run_until_idle(app, [queue])
    assert (True, 2, True) in deliveries, "a requeued message comes back redelivered"
    assert await _dead(broker, queue) == {dropped.id: "rejected"}
    await _assert_drained(broker, queue)


async def test_manual_ack_settles_once_and_a_later_failure_dead_letters_a_copy(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, second_ack = new_queue(), App(broker=broker), []

    @app.task(queue=queue)
    async def acks_itself(ctx: TaskContext) -> None:
        await ctx.ack()
        try:
            await ctx.ack()
        except AlreadySettled:
            second_ack.append("refused")
        raise ValueError("after the ack")

    result = await acks_itself.delay()
    await run_until_idle(app, [queue])
    assert second_ack == ["refused"]
    assert await _dead(broker, queue) == {result.id: "failed"}
    await _assert_drained(broker, queue)


async def test_early_ack_acks_before_running_and_records_a_failure(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, unacked_while_running = new_queue(), App(broker=broker), []

    @app.task(queue=queue, acks_late=False, max_retries=0)
    async def fire_and_forget() -> None:
        unacked_while_running.append((await broker.stats(queue)).unacked)
        raise ValueError("lost cause")

    result = await fire_and_forget.delay()
    await run_until_idle(app, [queue])
    assert unacked_while_running == [0], "early ack settles before the task runs"
    assert await _dead(broker, queue) == {result.id: "failed"}


async def test_failure_requeued_until_delivery_limit_when_not_acking_failures(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, runs = new_queue(), App(broker=broker), []

    @app.task(queue=queue, acks_on_failure_or_timeout=False, max_retries=0, delivery_limit=3)
    async def stubborn(ctx: TaskContext) -> None:
        runs.append(ctx.delivery_count)
        raise ValueError("still broken")

    result = await stubborn.delay()
    await run_until_idle(app, [queue])
    assert runs == [1, 2, 3]
    assert await _dead(broker, queue) == {result.id: "delivery_limit"}
    await _assert_drained(broker, queue)


async def test_redelivered_message_with_reject_on_worker_lost_false_is_dead_lettered(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, runs = new_queue(), App(broker=broker), []

    @app.task(queue=queue, reject_on_worker_lost=False)
    async def not_twice() -> None:
        runs.append(1)

    result = await not_twice.delay()
    # Given a delivery that was abandoned (handed out, never settled) ...
    consumer = await broker.consume([queue], prefetch=1)
    abandoned = await consumer.get(5.0)
    assert abandoned is not None
    await broker.requeue(abandoned)
    await consumer.close()
    # ... the worker does not run it again.
    await run_until_idle(app, [queue])
    assert runs == []
    assert await _dead(broker, queue) == {result.id: "worker_lost"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe not json at all", "malformed"),
        (b'{"v": 1, "id": "x"}', "malformed"),
        (b'{"v": 99, "id": "x", "task": "t"}', "malformed"),
        (b'["a", "list"]', "malformed"),
        (json.dumps({"v": 1, "id": "u1", "task": "no.such.task"}).encode(), "unknown_task"),
        (b"{" + b" " * 70_000 + b"}", "too_large"),
        # A newline in an id or a field name would forge a log line.
        (b'{"v": 1, "id": "x\\nforged INFO line", "task": "t"}', "malformed"),
        (b'{"v": 1, "id": "x", "task": "t", "k\\nforged": 1}', "malformed"),
        # Numbers that would overflow a header or switch a rule off.
        (b'{"v": 1, "id": "x", "task": "t", "attempt": 9223372036854775808}', "malformed"),
        (b'{"v": 1, "id": "x", "task": "t", "attempt": -1}', "malformed"),
        (b'{"v": 1, "id": "x", "task": "t", "expires": Infinity}', "malformed"),
        (b'{"v": 1, "id": "x", "task": "t", "published_at": NaN}', "malformed"),
    ],
    ids=[
        "undecodable",
        "missing-fields",
        "unknown-version",
        "wrong-type",
        "unknown-task",
        "too-large",
        "newline-in-id",
        "newline-in-field-name",
        "huge-attempt",
        "negative-attempt",
        "infinite-expires",
        "nan-published-at",
    ],
)
async def test_bad_input_is_dead_lettered_and_the_worker_keeps_going(
    broker: Broker,
    new_queue: Callable[[], str],
    body: bytes,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, app, seen = new_queue(), App(broker=broker, max_message_bytes=64_000), []

    @app.task(queue=queue)
    async def good(n: int) -> None:
        seen.append(n)

    await broker.declare([queue])
    await broker.publish(queue, body, message_id="bad")
    await good.delay(1)
    with caplog.at_level(logging.INFO, logger="aioack"):
        await run_until_idle(app, [queue])
    assert seen == [1], "the worker kept consuming after the bad message"
    assert not any("\nforged" in r.getMessage() for r in caplog.records), "a forged log line"
    [letter] = await broker.dead_letters(queue)
    assert letter.reason == reason
    assert letter.body == body, "the dead letter keeps the exact original body"
    await _assert_drained(broker, queue)


async def test_invalid_arguments_in_a_message_are_dead_lettered(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker)

    @app.task(queue=queue)
    async def typed(n: int) -> None:
        raise AssertionError("must not run")

    message = Message(id="m-bad-args", task=typed.name, args=["not a number"])
    await broker.declare([queue])
    await broker.publish(queue, message.encode(), message_id=message.id)
    assert await run_until_idle(app, [queue]) == []
    assert await _dead(broker, queue) == {"m-bad-args": "invalid_arguments"}


async def test_expired_message_is_dead_lettered_not_run(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker)

    @app.task(queue=queue)
    async def timely() -> None:
        raise AssertionError("must not run")

    message = Message(id="m-old", task=timely.name, expires=time.time() - 1)
    await broker.declare([queue])
    await broker.publish(queue, message.encode(), message_id=message.id)
    await run_until_idle(app, [queue])
    assert await _dead(broker, queue) == {"m-old": "expired"}


async def test_delivery_limit_dead_letters_a_crash_looping_message_before_running(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker)

    @app.task(queue=queue, delivery_limit=2)
    async def poison() -> None:
        raise AssertionError("must not run a third time")

    result = await poison.delay()
    consumer = await broker.consume([queue], prefetch=1)
    for _ in range(2):  # two runs that died without settling
        delivery = await consumer.get(5.0)
        assert delivery is not None
        await broker.requeue(delivery)
    await consumer.close()
    await run_until_idle(app, [queue])
    assert await _dead(broker, queue) == {result.id: "delivery_limit"}


async def test_concurrency_and_prefetch_bound_a_worker(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker)
    running, peak, release = set(), [0], asyncio.Event()

    @app.task(queue=queue)
    async def hold(n: int) -> None:
        running.add(n)
        peak[0] = max(peak[0], len(running))
        await release.wait()
        running.discard(n)

    for n in range(8):
        await hold.delay(n)
    worker = app.worker([queue], concurrency=2, prefetch=3)
    async with worker:
        await wait_until(lambda: len(running) == 2, message="two running")
        await wait_until(lambda: _unacked(broker, queue, 3), message="prefetch filled")
        assert (await broker.stats(queue)).unacked == 3
        release.set()
        await wait_until(lambda: _pending_zero(broker, queue), timeout=15, message="drained")
    assert peak[0] == 2


async def _unacked(broker: Broker, queue: str, n: int) -> bool:
    return (await broker.stats(queue)).unacked == n


async def _pending_zero(broker: Broker, queue: str) -> bool:
    return (await broker.stats(queue)).pending == 0


async def test_shutdown_hands_back_unstarted_and_lets_running_tasks_finish(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker)
    started, finished, proceed = [], [], asyncio.Event()

    @app.task(queue=queue)
    async def work(n: int) -> None:
        started.append(n)
        await proceed.wait()
        finished.append(n)

    for n in range(5):
        await work.delay(n)
    worker = app.worker([queue], concurrency=2, prefetch=5, shutdown_timeout=10)
    async with worker:
        await wait_until(lambda: len(started) == 2, message="two started")
        await wait_until(lambda: _unacked(broker, queue, 5), message="all prefetched")
        worker.stop()
        await wait_until(lambda: _ready_at_least(broker, queue, 3), message="unstarted handed back")
        proceed.set()
    assert sorted(finished) == sorted(started) and len(started) == 2
    stats = await broker.stats(queue)
    assert (stats.ready, stats.unacked) == (3, 0)
    # The handed-back deliveries were never started: they do not count.
    consumer = await broker.consume([queue], prefetch=5)
    for _ in range(3):
        delivery = await consumer.get(5.0)
        assert delivery is not None and delivery.delivery_count == 1
        await broker.ack(delivery)
    await consumer.close()


async def _ready_at_least(broker: Broker, queue: str, n: int) -> bool:
    return (await broker.stats(queue)).ready >= n


async def test_tasks_running_at_the_shutdown_deadline_are_cancelled_and_requeued(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, started = new_queue(), App(broker=broker), asyncio.Event()

    @app.task(queue=queue)
    async def endless() -> None:
        started.set()
        await asyncio.sleep(60)

    await endless.delay()
    worker = app.worker([queue], concurrency=1, prefetch=1, shutdown_timeout=0.2)
    async with worker:
        await started.wait()
    # basic.reject has no reply on AMQP: the count may trail the requeue a moment.
    await wait_until(lambda: _ready_at_least(broker, queue, 1), 5, message="handed back")
    stats = await broker.stats(queue)
    assert (stats.ready, stats.unacked, stats.dead) == (1, 0, 0), "never acked, handed back"


@pytest.mark.serial  # measures the event loop's gaps: nothing may run beside it
async def test_sync_task_runs_in_a_thread_without_blocking_the_loop(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app, ticks = new_queue(), App(broker=broker), []

    @app.task(queue=queue)
    def blocking() -> None:
        time.sleep(0.3)

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    await blocking.delay()
    tick_task = asyncio.create_task(ticker())
    await run_until_idle(app, [queue], raise_errors=True)
    tick_task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert gaps and max(gaps) < 0.25, "the loop kept ticking while the sync task slept"


async def test_early_ack_tasks_prefetched_but_unstarted_survive_a_graceful_stop(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker)
    started, proceed = asyncio.Event(), asyncio.Event()

    @app.task(queue=queue, acks_late=False)
    async def quick(n: int) -> None:
        started.set()
        await proceed.wait()

    for n in range(5):
        await quick.delay(n)
    worker = app.worker([queue], concurrency=1, prefetch=5, shutdown_timeout=10)
    async with worker:
        await started.wait()
        await wait_until(lambda: _unacked(broker, queue, 4), message="four prefetched")
        worker.stop()
        await wait_until(lambda: _ready_at_least(broker, queue, 4), message="handed back")
        proceed.set()
    stats = await broker.stats(queue)
    assert (stats.ready, stats.unacked) == (4, 0), "early ack must not lose unstarted messages"


async def test_a_run_whose_delivery_was_lost_is_cancelled_and_never_settled(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker)
    started, cancelled = asyncio.Event(), asyncio.Event()
    consumers: list[Consumer] = []
    consume = broker.consume

    async def capture(queues: Sequence[str], *, prefetch: int) -> Consumer:
        consumers.append(await consume(queues, prefetch=prefetch))
        return consumers[-1]

    @app.task(queue=queue)
    async def long_running() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await long_running.delay()
    broker.consume = capture  # type: ignore[method-assign]
    worker = app.worker([queue], concurrency=1, prefetch=1)
    async with worker:
        await started.wait()
        # The delivery is lost (as on a dropped connection): the broker takes it back.
        await consumers[0].close()
        await asyncio.wait_for(cancelled.wait(), timeout=10)
    stats = await broker.stats(queue)
    assert (stats.ready, stats.unacked, stats.dead) == (1, 0, 0), "lost, not acked: redelivered"
