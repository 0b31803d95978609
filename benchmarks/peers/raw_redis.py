"""The physical limit on Redis: one redis-py loop, XREADGROUP COUNT <prefetch>, one
pipelined XACK per batch, the no-op body per entry. ``python -m benchmarks.peers.raw_redis``.
"""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from benchmarks.peers import marker

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
STREAM = os.environ.get("BENCH_QUEUE", "bench-raw")
GROUP = "g"
PREFETCH = int(os.environ.get("BENCH_PREFETCH", "100"))


def noop() -> None:
    marker.done()


async def main() -> None:
    client = Redis.from_url(URL)
    with contextlib.suppress(ResponseError):  # BUSYGROUP: the producer made it
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    while True:
        reply = await client.xreadgroup(GROUP, "c", {STREAM: ">"}, count=PREFETCH, block=100)
        for _, entries in reply or []:
            for _entry_id, _fields in entries:
                noop()
            pipe = client.pipeline(transaction=False)
            pipe.xack(STREAM, GROUP, *[entry_id for entry_id, _ in entries])
            await pipe.execute()


@asynccontextmanager
async def producer() -> AsyncIterator[
    tuple[Callable[[], Awaitable[Any]], Callable[[int], Awaitable[Any]]]
]:
    """``(one, many)``: one XADD per await; ``many(k)``: k XADDs in one pipeline.
    The group is made first, so it reads what is queued before the worker starts."""
    client = Redis.from_url(URL)
    with contextlib.suppress(ResponseError):  # BUSYGROUP: made already
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    body = {"body": b'{"task":"noop"}', "id": "0"}

    async def many(k: int) -> None:
        pipe = client.pipeline(transaction=False)
        for _ in range(k):
            pipe.xadd(STREAM, body)
        await pipe.execute()

    try:
        yield (lambda: client.xadd(STREAM, body)), many
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
