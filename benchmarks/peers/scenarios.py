"""One run of one scenario for one system: what ``benchmarks/compare.py`` repeats.

Each function starts the system's worker process(es) through its CLI
(``systems.start_worker``), drives its own client (``peers/drive.py``), reads
what the task body wrote (``peers/marker.py``) and leaves nothing behind.
A system that cannot run a scenario raises ``NotApplicable`` with the reason.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.peers.systems import (
    REDIS,
    Load,
    System,
    broker_pid,
    drive,
    env,
    start_worker,
    stop,
    tree_rss_kib,
)

WARMUP = 20
#: The I/O-bound scenario: each run sleeps this long, this many at once.
IO_SLEEP_S, IO_CONCURRENCY = 0.05, 500
#: The families with a batch API that sends separate messages (the others have none).
HAS_BATCH = {"aioack", "raw", "streaq"}
#: Thread-based workers: one thread per running task, so no 10,000 in flight.
THREADED = {"celery", "dramatiq"}


if TYPE_CHECKING:
    import redis


class NotApplicable(Exception):
    """The system cannot run this scenario (the message says why)."""


def _names() -> tuple[str, str]:
    return f"bench-{uuid.uuid4().hex[:8]}", f"bench:{uuid.uuid4().hex}"


@contextlib.contextmanager
def _workers(
    system: System, queue: str, run_env: dict[str, str], scratch: Path, load: Load, count: int = 1
) -> Iterator[list[Any]]:
    with (scratch / f"{system.name}.log").open("ab") as log:
        started = [start_worker(system, queue, run_env, log, load) for _ in range(count)]
        try:
            yield started
        finally:
            stop(started)


def _wait_for(what: str, found: Callable[[], Any], workers: list[Any], timeout_s: float) -> Any:
    """Poll ``found()`` every 10 ms until it returns something; fail if a worker exits."""
    deadline = time.monotonic() + timeout_s
    while (got := found()) is None:
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited {worker.returncode} waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return got


@contextlib.contextmanager
def _clean(system: System, run_env: dict[str, str]) -> Iterator[redis.Redis]:
    """The system's queue empty before and after; a Redis client for the marks."""
    import redis  # the peers' venv has it; compare.py imports this module before

    marks = redis.Redis.from_url(REDIS)
    drive(system, run_env, "reset", timeout_s=60)
    try:
        yield marks
    finally:
        drive(system, run_env, "reset", timeout_s=60)
        marks.close()


# -- no-op backlog, worker and broker CPU ---------------------------------------------


def backlog(system: System, n: int, scratch: Path) -> dict[str, Any]:
    """One worker process drains a backlog of ``n`` no-ops; its own completion window,
    and the broker process's CPU over that window."""
    queue, key = _names()
    pid = broker_pid(system.broker)
    run_env = env(system, queue, scratch, BENCH_N=str(n), BENCH_KEY=key, BENCH_BROKER_PID=pid)
    with _clean(system, run_env) as marks:
        enqueue = drive(system, run_env, "enqueue", str(n), timeout_s=60 + n / 50)
        with _workers(system, queue, run_env, scratch, Load()) as workers:
            window = _wait_for("the backlog", lambda: marks.get(key), workers, 60 + n / 100)
    got = json.loads(window)
    return {
        "tasks_per_s": got["runs"] / got["wall_s"],
        "cpu_us_per_task": got["cpu_s"] / got["runs"] * 1e6,
        "broker_cpu_us_per_task": got["broker_cpu_s"] / got["runs"] * 1e6 if pid else None,
        "backlog_enqueue_per_s": enqueue.get("enqueue_per_s"),
    }


# -- latency -------------------------------------------------------------------------


def latency(system: System, n: int, scratch: Path) -> dict[str, float]:
    """Sequential runs through one worker: p50/p95/p99 ms from send to the run's end.

    The first WARMUP runs are dropped (the worker starting, first-use costs).
    """
    queue, key = _names()
    run_env = env(system, queue, scratch, BENCH_MODE="latency", BENCH_KEY=key)
    with _clean(system, run_env), _workers(system, queue, run_env, scratch, Load()):
        args = ["latency", str(n + WARMUP), key]
        got = drive(system, run_env, *args, timeout_s=120 + n)["latency_s"][WARMUP:]
    if min(got) < 0:  # a mark popped that no run of this send wrote
        raise RuntimeError(
            "a run ended before it was sent: a stray or duplicate completion mark, "
            "so this system's latency cannot be read this way"
        )
    cuts = statistics.quantiles([s * 1000 for s in got], n=100)
    return {"p50_ms": cuts[49], "p95_ms": cuts[94], "p99_ms": cuts[98]}


# -- enqueue, and enqueue while consuming --------------------------------------------------


def enqueue(system: System, n: int, scratch: Path, *, single: bool) -> float:
    queue, _ = _names()
    run_env = env(system, queue, scratch)
    with _clean(system, run_env):
        args = ["enqueue", str(n), *(["--single"] if single else [])]
        return float(drive(system, run_env, *args, timeout_s=60 + n / 50)["enqueue_per_s"])


def flow(system: System, n: int, scratch: Path, *, single: bool) -> dict[str, float]:
    """One producer sends ``n`` while one worker (already up: it ran a warm-up) consumes:
    tasks/s from the first send to the last run's end."""
    queue, key = _names()
    ready = f"{key}:ready"
    run_env = env(system, queue, scratch, BENCH_N=str(n + 1), BENCH_KEY=key, BENCH_READY_KEY=ready)
    with (
        _clean(system, run_env) as marks,
        _workers(system, queue, run_env, scratch, Load()) as workers,
    ):
        args = ["flow", str(n), ready, *(["--single"] if single else [])]
        sent = drive(system, run_env, *args, timeout_s=120 + n / 50)
        window = _wait_for("the runs", lambda: marks.get(key), workers, 60 + n / 100)
    elapsed = json.loads(window)["end_epoch"] - sent["started_epoch"]
    return {"tasks_per_s": n / elapsed, "enqueue_per_s": sent["enqueue_per_s"]}


# -- I/O-bound -------------------------------------------------------------------------


def io_bound(system: System, n: int, scratch: Path) -> dict[str, float]:
    """``n`` runs that each sleep IO_SLEEP_S, IO_CONCURRENCY at once (threads for the
    thread-based workers): efficiency = the ideal time over the measured one."""
    queue, key = _names()
    load = Load(IO_CONCURRENCY, IO_CONCURRENCY, threads=IO_CONCURRENCY)
    run_env = env(
        system,
        queue,
        scratch,
        load,
        BENCH_N=str(n),
        BENCH_KEY=key,
        BENCH_MODE="io",
        BENCH_SLEEP_S=str(IO_SLEEP_S),
    )
    with _clean(system, run_env) as marks:
        drive(system, run_env, "enqueue", str(n), timeout_s=60 + n / 50)
        with _workers(system, queue, run_env, scratch, load) as workers:
            window = _wait_for("the runs", lambda: marks.get(key), workers, 60 + n / 20)
    got = json.loads(window)
    ideal = n * IO_SLEEP_S / IO_CONCURRENCY
    return {"efficiency": ideal / got["wall_s"], "wall_s": got["wall_s"], "ideal_s": ideal}


# -- memory ----------------------------------------------------------------------------


def memory(system: System, n: int, scratch: Path) -> dict[str, float]:
    """Worker RSS (the process and its children) with ``n`` runs waiting at once, minus
    the RSS of the same system's worker at its no-op settings once it has run one
    task: KiB per task in flight. (Not minus the RSS of the worker set up for ``n``:
    a system that sets up per-slot state before any task, SAQ's connection and
    coroutine per slot, would hide it there.)"""
    if system.family in THREADED:
        raise NotApplicable(f"a thread per running task: {n:,} in flight would take {n:,} threads")
    idle = _warm_rss(system, scratch, Load(), n)
    load = Load(n, n)
    queue, key = _names()
    run_env = env(
        system, queue, scratch, load, BENCH_MODE="hold", BENCH_N=str(n + 1), BENCH_KEY=key
    )
    with (
        _clean(system, run_env) as marks,
        _workers(system, queue, run_env, scratch, load) as workers,
    ):
        idle_at_n = _warmed(system, run_env, marks, key, workers)
        drive(system, run_env, "enqueue", str(n), timeout_s=60 + n / 50)
        _wait_for("all in flight", lambda: marks.get(f"{key}:held"), workers, 60 + n / 100)
        time.sleep(1.0)
        held = tree_rss_kib(workers[0].pid)
        marks.set(f"{key}:release", "1", ex=3600)
        _wait_for("the release", lambda: marks.get(key), workers, 60 + n / 100)
    return {
        "kib_per_task": (held - idle) / n,
        "idle_mib": idle / 1024,
        "idle_at_n_mib": idle_at_n / 1024,
        "held_mib": held / 1024,
    }


def _warm_rss(system: System, scratch: Path, load: Load, n: int) -> int:
    """KiB of a worker with ``load`` once it has run one task (then stopped)."""
    queue, key = _names()
    run_env = env(
        system, queue, scratch, load, BENCH_MODE="hold", BENCH_N=str(n + 1), BENCH_KEY=key
    )
    with (
        _clean(system, run_env) as marks,
        _workers(system, queue, run_env, scratch, load) as workers,
    ):
        return _warmed(system, run_env, marks, key, workers)


def _warmed(
    system: System, run_env: dict[str, str], marks: redis.Redis, key: str, workers: list[Any]
) -> int:
    """Send the warm-up run, wait for it, let start-up settle: the worker's KiB."""
    drive(system, run_env, "enqueue", "1", "--single", timeout_s=60)
    _wait_for("the warm-up", lambda: marks.lpop(f"{key}:warm"), workers, 60)
    time.sleep(1.0)
    return tree_rss_kib(workers[0].pid)


# -- scaling ---------------------------------------------------------------------------


def scaling(system: System, n: int, scratch: Path, processes: int) -> float:
    """``processes`` worker processes drain a backlog of ``n`` no-ops, all let go at
    once (the marker's start gate): tasks/s from the first run after the gate to the
    last run of any process."""
    queue, key = _names()
    run_env = env(system, queue, scratch, BENCH_MODE="shared", BENCH_N=str(n), BENCH_KEY=key)
    with _clean(system, run_env) as marks:
        drive(system, run_env, "enqueue", str(n), timeout_s=60 + n / 50)
        with _workers(system, queue, run_env, scratch, Load(), processes) as workers:

            def all_up() -> bool | None:
                return marks.scard(f"{key}:ready") >= processes or None

            _wait_for(f"{processes} workers up", all_up, workers, 60 + 10 * processes)
            marks.set(f"{key}:go", "1", ex=3600)

            def all_done() -> bool | None:
                return int(marks.get(f"{key}:count") or 0) >= n or None

            _wait_for("the backlog", all_done, workers, 60 + n / 100)
            windows = [json.loads(v) for v in marks.hgetall(f"{key}:procs").values()]
    first = min(w[0] for w in windows)
    last = max(w[1] for w in windows)
    return n / (last - first)
