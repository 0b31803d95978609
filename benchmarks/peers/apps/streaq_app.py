"""streaq: ``streaq run benchmarks.peers.apps.streaq_app:worker``. Redis streams, acked
after the run; its default serializer (pickle). Redis only."""

import os

from streaq import Worker

from benchmarks.peers import marker

worker = Worker(
    redis_url=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9"),
    queue_name=os.environ.get("BENCH_QUEUE", "bench-streaq"),
    concurrency=int(os.environ.get("BENCH_CONCURRENCY", "50")),
    prefetch=int(os.environ.get("BENCH_PREFETCH", "100")),
    handle_signals=True,
)


@worker.task
async def noop() -> None:
    if marker.WAITS:  # the I/O-bound and memory scenarios
        await marker.wait()
    marker.done()
