"""The physical limit on Redis: one redis-py loop, XREADGROUP COUNT <prefetch>, one
pipelined XACK per batch, the no-op body per entry. ``python -m benchmarks.peers.raw_redis``.
"""

import asyncio
import os
import time

from redis.asyncio import Redis

from benchmarks.peers import marker

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
STREAM = os.environ.get("BENCH_QUEUE", "bench-raw")
GROUP = "g"
PREFETCH = int(os.environ.get("BENCH_PREFETCH", "100"))


def noop() -> None:
    marker.done()


async def main() -> None:
    client = Redis.from_url(URL)
    while True:
        reply = await client.xreadgroup(GROUP, "c", {STREAM: ">"}, count=PREFETCH, block=100)
        for _, entries in reply or []:
            for _entry_id, _fields in entries:
                noop()
            pipe = client.pipeline(transaction=False)
            pipe.xack(STREAM, GROUP, *[entry_id for entry_id, _ in entries])
            await pipe.execute()


async def enqueue(n: int, *, single: bool = False) -> float:
    """The group first (so it reads from the start), then XADDs, one per await or
    pipelined 500 at a time. Returns the seconds the XADDs took."""
    client = Redis.from_url(URL)
    await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    started = time.perf_counter()
    if single:
        for i in range(n):
            await client.xadd(STREAM, {"body": b'{"task":"noop"}', "id": str(i)})
    for offset in range(0, 0 if single else n, 500):
        pipe = client.pipeline(transaction=False)
        for i in range(offset, min(n, offset + 500)):
            pipe.xadd(STREAM, {"body": b'{"task":"noop"}', "id": str(i)})
        await pipe.execute()
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


if __name__ == "__main__":
    asyncio.run(main())
