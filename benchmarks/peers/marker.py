"""The completion detection every system's no-op task shares, at negligible cost.

Each worker process counts the runs of its task in memory (one ``next()`` of
an ``itertools.count``, atomic under the GIL, so thread pools count right).
The first run notes the wall clock and the process's CPU time; the run that
brings the count to ``BENCH_N`` notes them again and writes both, once, to
the Redis key ``BENCH_KEY``. The comparison reads that key: tasks/s over the
window from the first run to the last, and the worker's CPU per task in the
same window (every thread of the process; not its start-up).

For the latency scenario (``BENCH_MODE=latency``) each run instead pushes
its wall-clock end time to ``BENCH_KEY`` (one RPUSH per run: not measured
for CPU there).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time

import redis

_N = int(os.environ.get("BENCH_N", "0"))
_KEY = os.environ.get("BENCH_KEY", "bench:done")
_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_LATENCY = os.environ.get("BENCH_MODE") == "latency"
_count = itertools.count(1)
_first: tuple[float, float] | None = None
_client: redis.Redis | None = None
_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(_URL)
        return _client


def done() -> None:
    """Call once at the end of every run of the no-op task."""
    global _first
    if _LATENCY:
        _redis().rpush(_KEY, repr(time.time()))
        return
    seen = next(_count)
    if seen == 1:
        _first = (time.perf_counter(), time.process_time())
    if seen == _N:
        wall, cpu = time.perf_counter(), time.process_time()
        assert _first is not None
        window = {"runs": _N, "wall_s": wall - _first[0], "cpu_s": cpu - _first[1]}
        _redis().set(_KEY, json.dumps(window), ex=3600)
