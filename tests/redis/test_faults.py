"""Fault tests 1-7 of issue 3: real worker processes against a real Redis.

Each test runs ``python -m aioack worker tests.redis.fault_app:app`` as a
subprocess, enqueues from the test, breaks something (SIGKILL, SIGTERM, a cut
connection, a Redis restart, garbage in the stream) and then checks from
what the tasks recorded and from Redis itself that no task was lost.
Leases are 1 s so a reclaim takes about a second.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from aioack.brokers.redis import RedisBroker
from aioack.errors import BrokerUnavailable
from tests.proxy import TcpProxy
from tests.redis.fault_app import make_app
from tests.redis.servers import OwnRedis
from tests.redis.workers import WorkerProcess, counts, events
from tests.support import unique, wait_until

pytestmark = pytest.mark.slow

LEASE = "visibility_timeout=1&poll_interval=0.05"


def with_options(url: str, options: str = LEASE) -> str:
    return f"{url}{'&' if '?' in url else '?'}{options}"


@pytest.fixture
def queue() -> str:
    return unique("fq")


@pytest.fixture
def spawn(tmp_path: Path, queue: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts workers on ``queue``; kills whatever is left, and shows their logs on failure."""
    started: list[WorkerProcess] = []

    def start(url: str, **settings: float) -> WorkerProcess:
        started.append(WorkerProcess(tmp_path, queue, url, **settings))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for worker in started:
        worker.stop()
        print(f"--- worker {worker.pid} log (tail) ---\n{worker.output()[-3000:]}")


@pytest.fixture
async def cleanup(redis_url: str, queue: str) -> AsyncIterator[None]:
    yield
    broker = RedisBroker.from_url(redis_url)
    async with broker:
        await broker.delete([queue])


async def _stats(url: str, queue: str) -> tuple[int, int, int, int]:
    async with RedisBroker.from_url(url) as broker:
        assert isinstance(broker, RedisBroker)
        s = await broker.stats(queue)
        return s.ready, s.delayed, s.unacked, s.dead


async def _drained(url: str, queue: str) -> bool:
    ready, delayed, unacked, _ = await _stats(url, queue)
    return ready + delayed + unacked == 0


@pytest.mark.usefixtures("cleanup")
async def test_1_sigkilled_workers_tasks_run_elsewhere_and_none_of_200_is_lost(
    redis_url: str, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    url = with_options(redis_url)
    app, tasks = make_app(queue, url)
    async with app:
        for n in range(200):
            await tasks["work"].delay(n, 0.1)
    first = spawn(url, concurrency=10, prefetch=20)

    def some_done_and_some_running() -> bool:
        # Both, at the instant of the kill: on a loaded machine "40 done" alone
        # was once seen after the first worker had finished all 200.
        done = {n for n, _ in events(tmp_path, "done")}
        running = {n for n, _ in events(tmp_path, "started")} - done
        return len(done) >= 40 and bool(running)

    await wait_until(some_done_and_some_running, 20, message="40 done and some running")
    first.signal(signal.SIGKILL)
    first.wait(5)
    done_by_first = {n for n, pid in events(tmp_path, "done") if pid == first.pid}
    cut_short = {n for n, pid in events(tmp_path, "started") if pid == first.pid} - done_by_first
    assert cut_short, "the worker was not killed mid-task"
    second = spawn(url, concurrency=10, prefetch=20)
    await wait_until(lambda: set(counts(tmp_path, "done")) == set(range(200)), 30, message="all")
    done_by_second = {n for n, pid in events(tmp_path, "done") if pid == second.pid}
    assert cut_short <= done_by_second
    await wait_until(lambda: _drained(redis_url, queue), 10, message="the queue to drain")


@pytest.mark.usefixtures("cleanup")
async def test_2_a_task_running_three_leases_long_runs_exactly_once_with_two_workers(
    redis_url: str, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    url = with_options(redis_url)
    workers = [spawn(url, concurrency=2, prefetch=2) for _ in range(2)]
    app, tasks = make_app(queue, url)
    async with app:
        await tasks["work"].delay(7, 3.3)  # 3.3 visibility timeouts
    await wait_until(lambda: counts(tmp_path, "done")[7] >= 1, 15, message="the long task")
    await wait_until(lambda: _drained(redis_url, queue), 5, message="the ack")
    assert counts(tmp_path, "started") == {7: 1}, "a renewed lease was reclaimed: it ran twice"
    assert all(w.alive() for w in workers)


@pytest.mark.usefixtures("cleanup")
async def test_3_sigterm_finishes_running_tasks_and_hands_back_the_rest_at_once(
    redis_url: str, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    # A 30 s lease: what comes back within a second was handed back, not reclaimed.
    url = with_options(redis_url, "visibility_timeout=30&poll_interval=0.05")
    app, tasks = make_app(queue, url)
    async with app:
        for n in range(6):
            await tasks["hold"].delay(n)
    worker = spawn(url, concurrency=2, prefetch=6)
    await wait_until(lambda: len(events(tmp_path, "started")) == 2, 10, message="2 running")
    await wait_until(lambda: _held_all(redis_url, queue), 5, message="all 6 prefetched")
    worker.signal(signal.SIGTERM)
    await wait_until(
        lambda: _ready_is(redis_url, queue, 4), 1.0, message="4 handed back within a second"
    )
    (tmp_path / "release").touch()
    assert worker.wait(10) == 0
    assert set(counts(tmp_path, "done")) == {n for n, _ in events(tmp_path, "started")}
    async with RedisBroker.from_url(redis_url) as broker:
        consumer = await broker.consume([queue], prefetch=10)
        back = [await consumer.get(1.0) for _ in range(4)]
        assert [d.delivery_count for d in back if d is not None] == [1, 1, 1, 1]
        await consumer.close()


async def _held_all(url: str, queue: str) -> bool:
    return (await _stats(url, queue))[2] == 6


async def _ready_is(url: str, queue: str, ready: int) -> bool:
    return (await _stats(url, queue))[0] == ready


@pytest.mark.usefixtures("cleanup")
async def test_4_a_task_that_kills_its_worker_is_dead_lettered_and_others_flow(
    redis_url: str, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    url = with_options(redis_url)
    app, tasks = make_app(queue, url)
    async with app:
        await tasks["crash"].delay(999)
        for n in range(20):
            await tasks["work"].delay(n, 0.02)
    worker = spawn(url, concurrency=4, prefetch=8)
    restarts = 0

    async def settled() -> bool:
        nonlocal worker, restarts
        if not worker.alive():  # a supervisor (systemd, k8s) restarts it
            restarts += 1
            worker = spawn(url, concurrency=4, prefetch=8)
        letters = await _letters(redis_url, queue)
        return bool(letters) and set(counts(tmp_path, "done")) == set(range(20))

    await wait_until(settled, 30, interval=0.05, message="the crash loop to be dead-lettered")
    [letter] = await _letters(redis_url, queue)
    assert (letter.reason, letter.delivery_count) == ("delivery_limit", 4)
    assert counts(tmp_path, "started")[999] == 3 == restarts
    await wait_until(lambda: _drained(redis_url, queue), 5, message="the queue to drain")


async def _letters(url: str, queue: str) -> list:  # type: ignore[type-arg]
    async with RedisBroker.from_url(url) as broker:
        return await broker.dead_letters(queue)


@pytest.mark.usefixtures("cleanup")
async def test_5_a_cut_connection_mid_task_loses_nothing_and_the_worker_resumes(
    redis_url: str, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    proxy = await TcpProxy(redis_url).start()
    try:
        worker = spawn(with_options(proxy.url()), concurrency=4, prefetch=8)
        app, tasks = make_app(queue, with_options(redis_url))
        async with app:
            for n in range(40):
                await tasks["work"].delay(n, 0.1)
        for done_before_cut in (8, 20):
            await wait_until(lambda n=done_before_cut: len(counts(tmp_path, "done")) >= n, 15)
            proxy.refuse()  # an outage of a third of a second
            await asyncio.sleep(0.3)
            proxy.accept()
        await wait_until(lambda: set(counts(tmp_path, "done")) == set(range(40)), 20)
        await wait_until(lambda: _drained(redis_url, queue), 10, message="the queue to drain")
        assert worker.alive(), "the worker crashed on a cut connection"
    finally:
        await proxy.aclose()


async def test_6_a_redis_restart_under_load_loses_no_acknowledged_enqueue(
    own_redis: OwnRedis, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    url = with_options(own_redis.url)
    worker = spawn(url, concurrency=8, prefetch=16)
    app, tasks = make_app(queue, url)
    acknowledged: set[int] = set()
    async with app:
        for n in range(300):
            if n == 100:
                own_redis.kill()  # SIGKILL: only what is fsynced survives
            if n == 130:
                own_redis.start()
            try:
                await tasks["work"].delay(n, 0.005)
                acknowledged.add(n)
            except BrokerUnavailable:
                pass  # not acknowledged: the producer knows it must retry
    assert 100 < len(acknowledged) < 300
    await wait_until(lambda: acknowledged <= set(counts(tmp_path, "done")), 30, message="all")
    assert worker.alive()


@pytest.mark.usefixtures("cleanup")
async def test_7_garbage_in_the_stream_is_dead_lettered_and_the_worker_keeps_consuming(
    redis_url: str, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess], raw: Redis
) -> None:
    url = with_options(redis_url)
    worker = spawn(url, concurrency=2, prefetch=4)
    stream = RedisBroker.from_url(url)._io.keys(queue).stream
    unknown = json.dumps({"v": 1, "id": "u1", "task": "no.such.task"}).encode()
    await raw.xadd(stream, {"foo": b"bar"})
    await raw.xadd(stream, {"body": b"\xff\x00garbage\x80"})
    await raw.xadd(stream, {"body": unknown})
    await raw.xadd(stream, {"body": b"{}", "extra": b"field"})
    app, tasks = make_app(queue, url)
    async with app:
        for n in range(5):
            await tasks["work"].delay(n)
    await wait_until(lambda: set(counts(tmp_path, "done")) == set(range(5)), 10)
    letters = await _letters(redis_url, queue)
    assert sorted(letter.reason for letter in letters) == ["malformed"] * 3 + ["unknown_task"]
    assert b"\xff\x00garbage\x80" in [letter.body for letter in letters]
    await wait_until(lambda: _drained(redis_url, queue), 5, message="the queue to drain")
    assert worker.alive()


@pytest.mark.usefixtures("cleanup")
@pytest.mark.parametrize("second_signal", [False, True], ids=["one-signal", "two-signals"])
async def test_8_sigterm_while_redis_is_unreachable_is_bounded_and_acks_nothing(
    redis_url: str,
    queue: str,
    tmp_path: Path,
    spawn: Callable[..., WorkerProcess],
    second_signal: bool,
) -> None:
    # Given a worker running a task that does not end, whose Redis became
    # unreachable (its lease of 30 s is not lost: the run goes on)
    proxy = await TcpProxy(redis_url).start()
    try:
        url = with_options(proxy.url(), "visibility_timeout=30&poll_interval=0.05")
        app, tasks = make_app(queue, with_options(redis_url))
        async with app:
            await tasks["hold"].delay(1)
        grace_s = 60.0 if second_signal else 1.0
        worker = spawn(url, concurrency=1, prefetch=1, shutdown_timeout=grace_s)
        await wait_until(lambda: len(events(tmp_path, "started")) == 1, 10, message="running")
        proxy.refuse()
        await asyncio.sleep(0.3)
        # When it is stopped (with a second signal, or at the end of its grace)
        worker.signal(signal.SIGTERM)
        started = time.monotonic()
        if second_signal:
            await asyncio.sleep(0.3)
            started = time.monotonic()
            worker.signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 15)
        took_s = time.monotonic() - started
        # Then no step waits on the dead connection for longer than its bound
        # (docs/workers.md: grace + the closing allowance), and the run was not acked.
        bound_s = (0.0 if second_signal else grace_s) + 3.0
        assert took_s < bound_s, f"stop took {took_s:.1f}s"
        # FORCED_STOP, or SHUTDOWN_TIMEOUT: the grace ran out with the task running.
        assert code == (6 if second_signal else 10)
        proxy.accept()
        assert counts(tmp_path, "done") == {}
        assert (await _stats(redis_url, queue))[2] == 1, "the abandoned run is still pending"
    finally:
        await proxy.aclose()
