"""arq: ``arq benchmarks.peers.apps.arq_app.WorkerSettings``. Redis only; no results kept."""

import os
from typing import Any

from arq.connections import RedisSettings

from benchmarks.peers import marker

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-arq")


async def noop(ctx: dict[str, Any]) -> None:
    if marker.WAITS:  # the I/O-bound and memory scenarios
        await marker.wait()
    marker.done()


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(URL)
    queue_name = QUEUE
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "50"))
    keep_result = 0
    handle_signals = True
