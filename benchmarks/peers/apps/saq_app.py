"""SAQ: ``saq benchmarks.peers.apps.saq_app.settings --workers 1``. Redis only."""

import os
from typing import Any

from saq import Queue

from benchmarks.peers import marker

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-saq")
queue = Queue.from_url(URL, name=QUEUE)


async def noop(ctx: dict[str, Any]) -> None:
    if marker.WAITS:  # the I/O-bound and memory scenarios
        await marker.wait()
    marker.done()


settings = {
    "queue": queue,
    "functions": [noop],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "50")),
}
