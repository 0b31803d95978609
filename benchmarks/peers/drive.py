"""Each system's producer side, run in its own process by ``benchmarks/compare.py``:

    python -m benchmarks.peers.drive enqueue FAMILY N [--single]
    python -m benchmarks.peers.drive latency FAMILY N KEY
    python -m benchmarks.peers.drive flow FAMILY N READY_KEY [--single]
    python -m benchmarks.peers.drive reset FAMILY

with BENCH_BROKER_URL and BENCH_QUEUE set. ``enqueue`` sends N runs through
the system's own client (its batch API where it has one, unless
``--single``) and prints the rate (messages/s, the loop only: imports and
connecting excluded) as JSON. ``latency`` sends N runs one after another,
each once the one before has ended, and prints each one's seconds from
send to end. ``flow`` (enqueue and consume at once) sends one run, waits
until the worker has run it (its first run pushes to READY_KEY), then sends N
as ``enqueue`` does and prints the wall-clock time it started at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
QUEUE = os.environ.get("BENCH_QUEUE", "bench")


@dataclass
class Sender:
    """A system's client, connected: ``one()`` sends one run; ``many(k)`` its batch API."""

    one: Callable[[], Awaitable[Any]]
    many: Callable[[int], Awaitable[Any]] | None = None


@asynccontextmanager
async def _aioack() -> AsyncIterator[Sender]:
    from benchmarks.peers.apps.aioack_app import app, noop

    async with app:
        await app.broker.declare([QUEUE])
        # map(): at most 10,000 per call, one broker batch each
        yield Sender(noop.delay, lambda k: noop.map([()] * k))


@asynccontextmanager
async def _celery() -> AsyncIterator[Sender]:
    from benchmarks.peers.apps.celery_app import app, noop

    async def one() -> None:
        noop.delay()

    with app.connection_for_write() as connection:
        connection.ensure_connection()
        yield Sender(one)  # no batch API that sends separate messages


@asynccontextmanager
async def _dramatiq() -> AsyncIterator[Sender]:
    from benchmarks.peers.apps.dramatiq_app import broker, noop

    async def one() -> None:
        noop.send()

    yield Sender(one)  # no batch API (a group sends one message per member too)
    broker.close()


@asynccontextmanager
async def _taskiq() -> AsyncIterator[Sender]:
    from benchmarks.peers.apps.taskiq_app import broker, noop

    await broker.startup()
    try:
        yield Sender(noop.kiq)
    finally:
        await broker.shutdown()


@asynccontextmanager
async def _arq() -> AsyncIterator[Sender]:
    from arq import create_pool

    from benchmarks.peers.apps.arq_app import WorkerSettings

    pool = await create_pool(WorkerSettings.redis_settings, default_queue_name=QUEUE)
    try:
        yield Sender(lambda: pool.enqueue_job("noop"))
    finally:
        await pool.aclose()


@asynccontextmanager
async def _saq() -> AsyncIterator[Sender]:
    from benchmarks.peers.apps.saq_app import queue

    await queue.connect()
    # SAQ cancels a job after 10 s by default; the memory scenario's wait until released.
    options = {"timeout": 0} if os.environ.get("BENCH_MODE") == "hold" else {}
    try:
        yield Sender(lambda: queue.enqueue("noop", **options))
    finally:
        await queue.disconnect()


@asynccontextmanager
async def _streaq() -> AsyncIterator[Sender]:
    from benchmarks.peers.apps.streaq_app import noop, worker

    async with worker:  # enqueue_many: one pipeline per call
        yield Sender(
            noop.enqueue, lambda k: worker.enqueue_many([noop.enqueue() for _ in range(k)])
        )


@asynccontextmanager
async def _raw() -> AsyncIterator[Sender]:
    if URL.startswith("amqp"):
        from benchmarks.peers import raw_pika as raw
    else:
        from benchmarks.peers import raw_redis as raw  # type: ignore[no-redef]
    async with raw.producer() as sender:
        yield Sender(*sender)


SENDERS: dict[str, Callable[[], AbstractAsyncContextManager[Sender]]] = {
    "aioack": _aioack,
    "celery": _celery,
    "dramatiq": _dramatiq,
    "taskiq": _taskiq,
    "arq": _arq,
    "saq": _saq,
    "streaq": _streaq,
    "raw": _raw,
}
#: Runs per batch call: aioack's map() takes up to 10,000; the others 500 per pipeline.
BATCH = {"aioack": 10_000}


async def enqueue(family: str, n: int, single: bool) -> float:
    """Seconds to send ``n`` runs (set-up excluded): one call each, or the batch API."""
    async with SENDERS[family]() as sender:
        return await _send(sender, family, n, single)


async def _send(sender: Sender, family: str, n: int, single: bool) -> float:
    started = time.perf_counter()
    if single or sender.many is None:
        for _ in range(n):
            await sender.one()
    else:
        step = BATCH.get(family, 500)
        for offset in range(0, n, step):
            await sender.many(min(step, n - offset))
    return time.perf_counter() - started


async def flow(family: str, n: int, ready_key: str, single: bool) -> dict[str, float]:
    """One warm-up run, waited for (the worker is up); then ``n`` sent while it consumes.
    The wall-clock start of those ``n`` and their enqueue rate."""
    from redis.asyncio import Redis

    marks = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))
    async with SENDERS[family]() as sender:
        await sender.one()
        if await marks.blpop([ready_key], timeout=60) is None:
            raise TimeoutError("the worker did not run the warm-up within 60 s")
        await marks.aclose()
        started = time.time()
        elapsed = await _send(sender, family, n, single)
    return {"started_epoch": started, "enqueue_per_s": n / elapsed}


async def latency(family: str, n: int, key: str) -> list[float]:
    """Sequential: send one run, wait for its end (the worker RPUSHes its end time to
    ``key``), and so on. Seconds from before the send to the run's end, each run."""
    from redis.asyncio import Redis

    marks = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))
    found = []
    async with SENDERS[family]() as sender:
        for _ in range(n):
            started = time.time()
            await sender.one()
            reply = await marks.blpop([key], timeout=30)
            if reply is None:
                raise TimeoutError("a run did not end within 30 s")
            found.append(float(reply[1]) - started)
    await marks.aclose()
    return found


async def reset(family: str) -> None:
    """Remove what a run left: the benchmark's Redis database emptied, or the
    system's RabbitMQ queues deleted (names derived from BENCH_QUEUE)."""
    if URL.startswith("amqp"):
        import aio_pika

        connection = await aio_pika.connect(URL)
        try:
            for name in (QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ", f"{QUEUE}.delay"):
                channel = await connection.channel()
                with contextlib.suppress(Exception):  # absent: nothing to delete
                    await channel.queue_delete(name)
        finally:
            await connection.close()
        if family == "aioack":
            from benchmarks.peers.apps.aioack_app import app

            async with app:
                await app.broker.delete([QUEUE])
        return
    if URL.startswith("redis"):
        from redis.asyncio import Redis

        client = Redis.from_url(URL)
        keys = [key async for key in client.scan_iter(count=1000)]
        for start in range(0, len(keys), 1000):
            await client.unlink(*keys[start : start + 1000])
        await client.aclose()


def main(argv: list[str]) -> None:
    command, family = argv[0], argv[1]
    if command == "reset" and URL.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(URL.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        return
    if command == "reset":
        asyncio.run(reset(family))
        return
    n = int(argv[2])
    if command == "flow":
        print(json.dumps(asyncio.run(flow(family, n, argv[3], "--single" in argv))))
        return
    if command == "latency":
        print(json.dumps({"latency_s": asyncio.run(latency(family, n, argv[3]))}))
        return
    elapsed = asyncio.run(enqueue(family, n, "--single" in argv))
    print(json.dumps({"enqueue_per_s": n / elapsed}))


if __name__ == "__main__":
    main(sys.argv[1:])
