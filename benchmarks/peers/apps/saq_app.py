"""SAQ: ``saq benchmarks.peers.apps.saq_app.settings --workers 1``. Redis only.

Each running job takes a connection for its updates: with redis-py's default
pool (100, raising when empty) SAQ fails with "Too many connections" at 500 at
once. The pool here is sized to the concurrency but capped at 1,000, and a job
waits for a free connection instead of failing: at 10,000 in flight (the
memory scenario) a connection per job would take every client Redis allows
(maxclients 10,000) from everything else on the machine.
"""

import os
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from saq.queue.redis import RedisQueue

from benchmarks.peers import marker

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-saq")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "50"))
MAX_CONNECTIONS = min(CONCURRENCY + 100, 1000)
pool = BlockingConnectionPool.from_url(URL, max_connections=MAX_CONNECTIONS, timeout=None)
queue = RedisQueue(Redis(connection_pool=pool), name=QUEUE)


async def noop(ctx: dict[str, Any]) -> None:
    if marker.WAITS:  # the I/O-bound and memory scenarios
        await marker.wait()
    marker.done()


settings = {
    "queue": queue,
    "functions": [noop],
    "concurrency": CONCURRENCY,
}
