"""Fault tests: real ``python -m aioack worker`` processes against a real RabbitMQ.

Each test drives a worker subprocess running tests/rabbitmq/fault_app.py and
reads what ran from a shared append-only log.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from aioack.brokers.rabbitmq import RabbitMQBroker
from aioack.message import Message
from tests.proxy import TcpProxy
from tests.rabbitmq import fault_app
from tests.rabbitmq.workers import WorkerProcess, done_ids, events, send
from tests.support import wait_until

pytestmark = pytest.mark.slow

#: What a channel error from acking on the wrong channel would print.
CHANNEL_ERRORS = ("unknown delivery tag", "PRECONDITION_FAILED")


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "events.log"


@pytest.fixture
def spawn(log: Path, queue_name: str, amqp_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(url: str | None = None, **kwargs: object) -> WorkerProcess:
        worker = WorkerProcess(queue_name, log, url or amqp_url, **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
async def declared(rabbit: RabbitMQBroker, queue_name: str) -> AsyncIterator[str]:
    await rabbit.declare([queue_name])
    yield queue_name


async def test_sigkill_mid_task_loses_nothing(
    rabbit: RabbitMQBroker, declared: str, spawn: Callable[..., WorkerProcess], log: Path
) -> None:
    # Given 200 tasks and a worker holding 4 running and 4 prefetched
    for n in range(200):
        await send(rabbit, declared, "work", n, 0.02)
    first = spawn(concurrency=4, prefetch=8)
    await wait_until(lambda: len(done_ids(log)) >= 20, timeout=20, message="20 done")
    # When it is killed mid-task
    first.kill()
    killed_running = {int(w[0]) for w in events(log, "start")} - done_ids(log)
    assert killed_running, "the kill should have caught tasks mid-run"
    # Then another worker completes everything, including what the first held
    spawn(concurrency=4, prefetch=8)
    await wait_until(lambda: done_ids(log) == set(range(200)), timeout=30, message="all 200")
    assert (await rabbit.stats(declared)).dead == 0


async def test_sigterm_finishes_running_hands_back_prefetched_and_exits_0(
    rabbit: RabbitMQBroker, declared: str, spawn: Callable[..., WorkerProcess], log: Path
) -> None:
    for n in range(6):
        await send(rabbit, declared, "work", n, 1.0)
    worker = spawn(concurrency=2, prefetch=6)
    try:
        await wait_until(lambda: len(events(log, "start")) >= 2, timeout=15, message="2 running")
    except AssertionError:
        raise AssertionError(worker.output()) from None
    assert len(events(log, "start")) == 2, worker.output()
    await wait_until(lambda: _unacked(rabbit, declared, 6), timeout=5, message="6 prefetched")
    worker.terminate()
    assert await asyncio.to_thread(worker.proc.wait, 10) == 0, worker.output()
    running = {int(w[0]) for w in events(log, "start")}
    assert done_ids(log) == running, "running tasks finish before exit"
    # The four prefetched, never started, are back, uncounted and not "redelivered".
    consumer = await rabbit.consume([declared], prefetch=10)
    back = [await consumer.get(5.0) for _ in range(4)]
    assert all(d is not None for d in back)
    assert {(d.delivery_count, d.redelivered) for d in back if d} == {(1, False)}
    for d in back:
        assert d is not None
        await rabbit.ack(d)
    await consumer.close()


async def _unacked(rabbit: RabbitMQBroker, queue: str, n: int) -> bool:
    return (await rabbit.stats(queue)).ready == 6 - n


async def test_a_task_that_kills_its_worker_is_dead_lettered_after_its_delivery_limit(
    rabbit: RabbitMQBroker, declared: str, spawn: Callable[..., WorkerProcess], log: Path
) -> None:
    await send(rabbit, declared, "suicide", 0)
    for n in range(1, 21):
        await send(rabbit, declared, "work", n, 0.0)
    for _ in range(6):  # a supervisor restarting the worker each time it dies
        worker = spawn(concurrency=4, prefetch=4)
        await wait_until(
            lambda w=worker: not w.alive() or (done_ids(log) >= set(range(1, 21)) and _dead(log)),
            timeout=20,
            message="worker death or all done",
        )
        if worker.alive():
            break
    else:
        pytest.fail("the crash loop never ended")
    assert [int(w[2]) for w in events(log, "suicide")] == [1, 2, 3]
    await wait_until(lambda: _dead_count(rabbit, declared, 1), timeout=10, message="dead letter")
    [letter] = await rabbit.dead_letters(declared)
    assert (letter.reason, letter.delivery_count, letter.message_id) == (
        "delivery_limit",
        4,
        "suicide-0",
    )
    assert done_ids(log) >= set(range(1, 21))


def _dead(log: Path) -> bool:
    return len(events(log, "suicide")) >= 3


async def test_connection_cuts_mid_task_and_mid_ack_lose_nothing(
    rabbit: RabbitMQBroker,
    declared: str,
    spawn: Callable[..., WorkerProcess],
    log: Path,
    proxy: TcpProxy,
) -> None:
    for n in range(20):
        await send(rabbit, declared, "work", n, 0.4)
    for n in range(20, 400):
        await send(rabbit, declared, "work", n, 0.0)
    worker = spawn(proxy.url(), concurrency=4, prefetch=8)
    # Cut while tasks run: their deliveries are lost, RabbitMQ redelivers them.
    await wait_until(lambda: len(events(log, "start")) >= 4, timeout=15, message="running")
    proxy.cut()
    # Cut again during the burst of no-op tasks: acks are in flight.
    await wait_until(lambda: len(done_ids(log)) >= 100, timeout=30, message="100 done")
    proxy.cut()
    await wait_until(lambda: done_ids(log) == set(range(400)), timeout=40, message="all 400")
    assert worker.alive(), worker.output()
    assert proxy.connections >= 3, "the worker reconnected after each cut"
    output = worker.output()
    assert not any(err in output for err in CHANNEL_ERRORS), output
    worker.terminate()
    assert await asyncio.to_thread(worker.proc.wait, 15) == 0, worker.output()
    stats = await rabbit.stats(declared)
    assert (stats.ready, stats.dead) == (0, 0)


async def test_garbage_is_dead_lettered_with_its_reason_and_the_worker_goes_on(
    rabbit: RabbitMQBroker, declared: str, spawn: Callable[..., WorkerProcess], log: Path
) -> None:
    bad = {
        "garbage": b"\xff\x00\x80 not json",
        "wrong-shape": b'{"hello": "world"}',
        "unknown": Message(id="unknown", task="no.such.task").encode(),
    }
    for message_id, body in bad.items():
        await rabbit.publish(declared, body, message_id=message_id)
    await send(rabbit, declared, "work", 1, 0.0)
    spawn(concurrency=2, prefetch=4)
    await wait_until(lambda: done_ids(log) == {1}, timeout=15, message="the good task")
    await wait_until(lambda: _dead_count(rabbit, declared, 3), timeout=10, message="3 dead")
    letters = {d.message_id: d for d in await rabbit.dead_letters(declared)}
    assert {k: (v.reason, v.body) for k, v in letters.items()} == {
        "garbage": ("malformed", bad["garbage"]),
        "wrong-shape": ("malformed", bad["wrong-shape"]),
        "unknown": ("unknown_task", bad["unknown"]),
    }


async def _dead_count(rabbit: RabbitMQBroker, queue: str, n: int) -> bool:
    return (await rabbit.stats(queue)).dead == n


@pytest.mark.serial  # measures how late retries come back: nothing may run beside it
async def test_retries_wait_in_the_broker_and_come_back_on_time(
    rabbit: RabbitMQBroker, declared: str, spawn: Callable[..., WorkerProcess], log: Path
) -> None:
    await send(rabbit, declared, "flaky", 7)
    spawn(concurrency=1, prefetch=1)
    await wait_until(lambda: done_ids(log) == {7}, timeout=20, message="third attempt")
    times = [float(w[2]) for w in events(log, "attempt")]
    assert [int(w[1]) for w in events(log, "attempt")] == [1, 2, 3]
    backoff_s = float(fault_app.flaky.options.retry_backoff)
    for k, gap_s in enumerate([b - a for a, b in itertools.pairwise(times)]):
        expected_s = backoff_s * 2**k
        # Tolerance (docs/rabbitmq.md): never early; a hop per set bit of the delay (+10% + 0.25 s).
        assert expected_s <= gap_s <= expected_s * 1.1 + 0.25, (k, gap_s)


@pytest.mark.parametrize("running", [0, 2], ids=["idle", "running"])
async def test_sigterm_while_the_broker_is_unreachable_exits_within_the_shutdown_timeout(
    rabbit: RabbitMQBroker,
    declared: str,
    spawn: Callable[..., WorkerProcess],
    log: Path,
    proxy: TcpProxy,
    running: int,
) -> None:
    # Given a worker (idle, or with two tasks running) whose broker became unreachable
    for n in range(running):
        await send(rabbit, declared, "work", n, 1.0)
    worker = spawn(proxy.url(), concurrency=2, prefetch=2, shutdown_timeout_s=2.0)
    await wait_until(lambda: "worker ready" in worker.output(), timeout=15, message="ready")
    await wait_until(
        lambda: len(events(log, "start")) >= running, timeout=15, message="tasks running"
    )
    proxy.refuse()
    await asyncio.sleep(0.3)  # the worker has noticed: its reads fail
    # When it gets SIGTERM
    started = asyncio.get_running_loop().time()
    worker.terminate()
    # Then every step of the shutdown is bounded: it exits within the timeout plus
    # the short allowance for closing (docs/workers.md), nothing acked on the way out.
    code = await asyncio.to_thread(worker.proc.wait, 15)
    took_s = asyncio.get_running_loop().time() - started
    assert took_s < 2.0 + 3.0, f"shutdown took {took_s:.1f}s\n{worker.output()}"
    assert code == 0, worker.output()
    proxy.accept()
    # The tasks that ran are still on the broker: their acks could not be sent.
    stats = await rabbit.stats(declared)
    assert stats.ready == running, stats
