"""The completion detection every system's task body shares, at negligible cost.

Every app's task body is ``if marker.WAITS: await marker.wait()`` (threads:
``marker.wait_sync()``), then ``marker.done()``. What they do depends on
``BENCH_MODE``:

- ``""`` (no-op backlog, enqueue-and-consume): each worker process counts
  the runs in memory (one ``next()`` of an ``itertools.count``, atomic under
  the GIL, so thread pools count right). The first run notes the clocks; the
  run that brings the count to ``BENCH_N`` notes them again and writes the
  window once to the Redis key ``BENCH_KEY``: runs, wall seconds, the
  process's CPU seconds (every thread, start-up excluded), the broker
  process's CPU seconds over the same window (``BENCH_BROKER_PID``, read from
  /proc), and the wall-clock end. With ``BENCH_READY_KEY`` set, the first run
  also pushes to that key (the producer waits for it: the worker is up).
- ``latency``: each run pushes its wall-clock end time to ``BENCH_KEY``.
- ``io``: each run first sleeps ``BENCH_SLEEP_S`` (asyncio, or in its thread);
  the window starts when the first run starts.
- ``hold`` (memory): the first run passes (the warm-up: it pushes to
  ``BENCH_KEY:warm``); the others wait, and the one that makes ``BENCH_N - 1``
  wait at the same time sets ``BENCH_KEY:held``; all are let go once ``BENCH_KEY:release``
  exists (polled every 0.1 s by one coroutine). asyncio bodies only.
- ``shared`` (scaling, several worker processes): a start gate first, so no
  process drains the backlog while the others are still starting: each
  process's first run adds its pid to ``BENCH_KEY:ready`` and holds the
  process (and its other threads) until ``BENCH_KEY:go`` exists. Then each
  process counts in memory and notes its first and last run's wall clock; a
  thread adds the count to ``BENCH_KEY:count`` and the process's window to
  the hash ``BENCH_KEY:procs`` every 5 ms (one pipeline, only when the count
  moved), so the comparison reads when all processes together reach
  ``BENCH_N``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time

import redis

_N = int(os.environ.get("BENCH_N", "0"))
_KEY = os.environ.get("BENCH_KEY", "bench:done")
_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_MODE = os.environ.get("BENCH_MODE", "")
_READY = os.environ.get("BENCH_READY_KEY", "")
_SLEEP_S = float(os.environ.get("BENCH_SLEEP_S", "0"))
_BROKER_PID = os.environ.get("BENCH_BROKER_PID", "")
#: Whether the body waits before ``done()``: one module attribute read per run otherwise.
WAITS = _MODE in ("io", "hold")
_count = itertools.count(1)
_first: tuple[float, float, float] | None = None  # perf_counter, process_time, broker CPU
_client: redis.Redis | None = None
_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(_URL)
        return _client


def broker_cpu_s(pid: str) -> float:
    """CPU seconds process ``pid`` has used (0.0 without one, or once it is gone).

    The sum of its threads' /proc/<pid>/task/*/schedstat (nanoseconds: a window
    of a few thousand runs is shorter than /proc/<pid>/stat's 10 ms ticks);
    utime + stime from /proc/<pid>/stat where schedstat is missing.
    """
    if not pid:
        return 0.0
    try:
        total = 0
        for thread in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{thread}/schedstat") as stat:
                total += int(stat.read().split()[0])
        return total / 1e9
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After "pid (comm)": state is field 0, utime 11, stime 12 (man 5 proc, minus 3).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _begin() -> None:
    global _first
    if _first is None:
        with _lock:
            if _first is None:
                _first = (time.perf_counter(), time.process_time(), broker_cpu_s(_BROKER_PID))


def done() -> None:
    """Call once at the end of every run of the task."""
    if _MODE == "latency":
        _redis().rpush(_KEY, repr(time.time()))
        return
    if _MODE == "shared":
        _shared_done()
        return
    seen = next(_count)
    if seen == 1:
        _begin()
        if _READY:
            _redis().rpush(_READY, "1")
    if seen == _N:
        wall, cpu, end = time.perf_counter(), time.process_time(), time.time()
        broker = broker_cpu_s(_BROKER_PID)
        assert _first is not None
        window = {
            "runs": _N,
            "wall_s": wall - _first[0],
            "cpu_s": cpu - _first[1],
            "broker_cpu_s": broker - _first[2],
            "end_epoch": end,
        }
        _redis().set(_KEY, json.dumps(window), ex=3600)


async def wait() -> None:
    """The wait of an asyncio body: a sleep (``io``) or until released (``hold``)."""
    if _MODE == "io":
        _begin()
        await asyncio.sleep(_SLEEP_S)
    else:
        await _hold()


def wait_sync() -> None:
    """The wait of a body run in a thread: a sleep in that thread (``io`` only)."""
    if _MODE != "io":
        raise RuntimeError("only the io mode waits in a thread")
    _begin()
    time.sleep(_SLEEP_S)


# -- hold (memory) ------------------------------------------------------------------

_calls = 0
_waiting = 0
_release: asyncio.Event | None = None
_keep: set[asyncio.Task[None]] = set()


async def _hold() -> None:
    global _calls, _waiting, _release
    _calls += 1
    if _calls == 1:  # the warm-up: the worker is up and has run one task
        _redis().rpush(f"{_KEY}:warm", "1")
        return
    if _release is None:
        _release = asyncio.Event()
        poller = asyncio.ensure_future(_poll_release(_release))
        _keep.add(poller)
    # Runs waiting now, not calls: a run a system cancels (a job timeout) stops counting.
    _waiting += 1
    try:
        if _waiting == _N - 1:  # all but the warm-up
            _redis().set(f"{_KEY}:held", "1", ex=3600)
        await _release.wait()
    finally:
        _waiting -= 1


async def _poll_release(release: asyncio.Event) -> None:
    while not _redis().exists(f"{_KEY}:release"):
        await asyncio.sleep(0.1)
    release.set()


# -- shared (scaling) -----------------------------------------------------------------

_seen = 0
_first_epoch = 0.0
_last_epoch = 0.0
_flusher: threading.Thread | None = None


_go = threading.Event()
_gate_lock = threading.Lock()


def _gate() -> None:
    """Hold this process until every process is up (the comparison sets the go key)."""
    with _gate_lock:  # a thread pool's other threads wait here
        if _go.is_set():
            return
        client = _redis()
        client.sadd(f"{_KEY}:ready", str(os.getpid()))
        client.expire(f"{_KEY}:ready", 3600)
        while not client.exists(f"{_KEY}:go"):
            time.sleep(0.005)
        _go.set()


def _shared_done() -> None:
    global _seen, _first_epoch, _last_epoch, _flusher
    if not _go.is_set():
        _gate()
    now = time.time()
    # The clocks before the count: a flush that sees the count sees its run's time.
    if not _first_epoch:
        _first_epoch = now
    _last_epoch = now
    _seen = next(_count)
    if _flusher is None:
        with _lock:
            if _flusher is None:
                _flusher = threading.Thread(target=_flush_forever, daemon=True)
                _flusher.start()


def _flush_forever() -> None:
    client = redis.Redis.from_url(_URL)
    flushed, pid = 0, str(os.getpid())
    while True:
        time.sleep(0.005)
        seen, first, last = _seen, _first_epoch, _last_epoch
        if seen == flushed:
            continue
        pipe = client.pipeline(transaction=False)
        # The window first, then the count: once the count reaches N every
        # process's window is written.
        pipe.hset(f"{_KEY}:procs", pid, json.dumps([first, last, seen]))
        pipe.incrby(f"{_KEY}:count", seen - flushed)
        pipe.expire(f"{_KEY}:count", 3600)
        pipe.expire(f"{_KEY}:procs", 3600)
        pipe.execute()
        flushed = seen
