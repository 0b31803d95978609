"""Fault tests: real ``python -m aioack worker`` processes sharing one SQLite file.

What is counted: task-body starts and completions each process wrote to a
file (``started``, ``done``), and messages left in the database.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aioack.brokers.sqlite import SQLiteBroker
from tests.redis.fault_app import make_app
from tests.redis.workers import WorkerProcess, counts, events
from tests.support import unique, wait_until

pytestmark = pytest.mark.slow

#: Short leases: a dead or stalled worker's tasks move on within a second.
OPTIONS = "visibility_timeout=1"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/queue.db?{OPTIONS}"


@pytest.fixture
def queue() -> str:
    return unique("sq")


@pytest.fixture
def spawn(tmp_path: Path, queue: str) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(url: str, **settings: float) -> WorkerProcess:
        started.append(WorkerProcess(tmp_path, queue, url, **settings))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for worker in started:
        worker.stop()
        print(f"--- worker {worker.pid} log (tail) ---\n{worker.output()[-3000:]}")


async def _pending(url: str, queue: str) -> int:
    async with SQLiteBroker.from_url(url) as broker:
        return (await broker.stats(queue)).pending


async def _drained(url: str, queue: str) -> bool:
    return await _pending(url, queue) == 0


async def test_a_sigkilled_workers_tasks_run_in_another_process_and_none_of_200_is_lost(
    url: str, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    app, tasks = make_app(queue, url)
    async with app:
        for n in range(200):
            # Staggered lengths: runs overlap, so there is always one to cut short.
            await tasks["work"].delay(n, 0.05 + (n % 7) * 0.03)
    first = spawn(url, concurrency=10, prefetch=20)

    def mid_task() -> bool:
        done = {n for n, _ in events(tmp_path, "done")}
        running = {n for n, _ in events(tmp_path, "started")} - done
        return len(done) >= 40 and bool(running)

    await wait_until(mid_task, 30, message="40 tasks done and some running")
    first.signal(signal.SIGKILL)
    first.wait(5)
    done_by_first = {n for n, pid in events(tmp_path, "done") if pid == first.pid}
    cut_short = {n for n, pid in events(tmp_path, "started") if pid == first.pid} - done_by_first
    assert cut_short, "the worker was not killed mid-task"
    second = spawn(url, concurrency=10, prefetch=20)
    await wait_until(lambda: set(counts(tmp_path, "done")) == set(range(200)), 30, message="all")
    assert cut_short <= {n for n, pid in events(tmp_path, "done") if pid == second.pid}
    await wait_until(lambda: _drained(url, queue), 10, message="the queue to drain")


async def test_two_workers_on_one_file_never_run_a_task_twice(
    url: str, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    app, tasks = make_app(queue, url)
    async with app:
        for n in range(300):
            await tasks["work"].delay(n, 0.01)
    workers = [spawn(url, concurrency=8, prefetch=16) for _ in range(2)]
    await wait_until(lambda: set(counts(tmp_path, "done")) == set(range(300)), 30, message="all")
    starts = counts(tmp_path, "started")
    assert set(starts.values()) == {1}, {n: c for n, c in starts.items() if c != 1}
    assert len({pid for _, pid in events(tmp_path, "started")}) == 2, "both workers took work"
    assert all(w.alive() for w in workers)
    await wait_until(lambda: _drained(url, queue), 10, message="the queue to drain")


async def test_a_stalled_worker_loses_its_lease_and_cannot_settle_what_another_holds(
    url: str, queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    app, tasks = make_app(queue, url)
    async with app:
        await tasks["hold"].delay(1)  # runs until the file "release" appears
    stalled = spawn(url, concurrency=1, prefetch=1)
    await wait_until(lambda: len(events(tmp_path, "started")) == 1, 10, message="running")
    stalled.signal(signal.SIGSTOP)  # its heartbeat stops: the lease (1 s) runs out
    try:
        other = spawn(url, concurrency=1, prefetch=1)
        await wait_until(lambda: len(events(tmp_path, "started")) == 2, 10, message="reclaimed")
        assert events(tmp_path, "started")[1][1] == other.pid
        (tmp_path / "release").touch()
        await wait_until(lambda: counts(tmp_path, "done")[1] >= 1, 10, message="done by other")
    finally:
        stalled.signal(signal.SIGCONT)
    # The stalled worker wakes, finishes its run (the release file exists), and
    # its ack finds the row held by another token: nothing it does settles it.
    await wait_until(
        lambda: "lost its lease before ack" in stalled.output(), 10, message="the stale ack"
    )
    await wait_until(lambda: _drained(url, queue), 10, message="settled once, by the other")
    assert " acked " not in stalled.output(), "the stalled worker settled another's delivery"
    assert " acked " in other.output()


async def test_a_task_ten_leases_long_runs_once_with_two_workers(
    queue: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    url = f"sqlite:///{tmp_path}/queue.db?visibility_timeout=0.3"
    workers = [spawn(url, concurrency=2, prefetch=2) for _ in range(2)]
    app, tasks = make_app(queue, url)
    async with app:
        await tasks["work"].delay(7, 3.0)  # ten visibility timeouts
    await wait_until(lambda: counts(tmp_path, "done")[7] >= 1, 20, message="the long task")
    await wait_until(lambda: _drained(url, queue), 5, message="the ack")
    assert counts(tmp_path, "started") == {7: 1}, "a renewed lease was reclaimed: it ran twice"
    assert all(w.alive() for w in workers)
    await asyncio.sleep(0)
