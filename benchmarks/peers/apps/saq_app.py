"""SAQ: ``saq benchmarks.peers.apps.saq_app.settings --workers 1``. Redis only.

Each running job takes a connection for its updates: the Redis client's pool
(redis-py's default: 100) is sized to the concurrency, or SAQ fails with "Too
many connections" at 500 at once.
"""

import os
from typing import Any

from redis.asyncio import Redis
from saq.queue.redis import RedisQueue

from benchmarks.peers import marker

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-saq")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "50"))
queue = RedisQueue(Redis.from_url(URL, max_connections=CONCURRENCY + 100), name=QUEUE)


async def noop(ctx: dict[str, Any]) -> None:
    if marker.WAITS:  # the I/O-bound and memory scenarios
        await marker.wait()
    marker.done()


settings = {
    "queue": queue,
    "functions": [noop],
    "concurrency": CONCURRENCY,
}
