"""The physical limit on Redis: one redis-py loop, XREADGROUP COUNT <prefetch>, one
pipelined XACK per batch, the no-op body per entry. ``python -m benchmarks.peers.raw_redis``.

When the body waits (the I/O-bound and memory scenarios), the same loop starts
an asyncio task per entry, at most BENCH_CONCURRENCY at once, and one acker
task XACKs the ended entries together.
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
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "50"))
#: One name per process, so the scaling scenario's processes are separate consumers.
CONSUMER = f"c-{os.getpid()}"


def noop() -> None:
    marker.done()


async def main() -> None:
    client = Redis.from_url(URL)
    with contextlib.suppress(ResponseError):  # BUSYGROUP: the producer made it
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    if marker.WAITS:
        await concurrent(client)
    while True:
        reply = await client.xreadgroup(GROUP, CONSUMER, {STREAM: ">"}, count=PREFETCH, block=100)
        for _, entries in reply or []:
            for _entry_id, _fields in entries:
                noop()
            pipe = client.pipeline(transaction=False)
            pipe.xack(STREAM, GROUP, *[entry_id for entry_id, _ in entries])
            await pipe.execute()


async def concurrent(client: Redis) -> None:
    """A task per entry (the body waits), up to CONCURRENCY; ended entries acked together."""
    ended: list[bytes] = []
    room, ack_due = asyncio.Event(), asyncio.Event()
    room.set()
    running: set[asyncio.Task[None]] = set()

    async def run(entry_id: bytes) -> None:
        await marker.wait()
        marker.done()
        ended.append(entry_id)
        ack_due.set()

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        room.set()

    async def acker() -> None:
        while True:
            await ack_due.wait()
            ack_due.clear()
            ids = ended[:]
            del ended[: len(ids)]
            await client.xack(STREAM, GROUP, *ids)

    acking = asyncio.create_task(acker())
    while not acking.done():
        await room.wait()
        free = CONCURRENCY - len(running)
        reply = await client.xreadgroup(
            GROUP, CONSUMER, {STREAM: ">"}, count=min(PREFETCH, free), block=100
        )
        for _, entries in reply or []:
            for entry_id, _fields in entries:
                task = asyncio.create_task(run(entry_id))
                running.add(task)
                task.add_done_callback(finished)
        if len(running) >= CONCURRENCY:
            room.clear()
    acking.result()  # the acker failed: raise its error


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
