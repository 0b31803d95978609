"""Each system's producer side, run in its own process by ``benchmarks/compare.py``:

    python -m benchmarks.peers.drive enqueue SYSTEM N [--single]
    python -m benchmarks.peers.drive reset SYSTEM

with BENCH_BROKER_URL and BENCH_QUEUE set. ``enqueue`` fills the backlog
through the system's own client (its batch API where it has one, unless
``--single``) and prints the enqueue rate (messages/s, the loop only:
imports and connecting excluded) as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
QUEUE = os.environ.get("BENCH_QUEUE", "bench")


async def _aioack(n: int, single: bool) -> float:
    from benchmarks.peers.apps.aioack_app import app, noop

    async with app:
        await app.broker.declare([QUEUE])
        started = time.perf_counter()
        if single:
            for _ in range(n):
                await noop.delay()
        else:
            for offset in range(0, n, 10_000):  # map(): at most 10,000 per call
                await noop.map([()] * min(10_000, n - offset))
        return time.perf_counter() - started


async def _celery(n: int, single: bool) -> float:
    from benchmarks.peers.apps.celery_app import app, noop

    with app.connection_for_write() as connection:
        connection.ensure_connection()
        started = time.perf_counter()
        for _ in range(n):  # no batch API that sends separate messages
            noop.delay()
        return time.perf_counter() - started


async def _dramatiq(n: int, single: bool) -> float:
    from benchmarks.peers.apps.dramatiq_app import broker, noop

    started = time.perf_counter()
    for _ in range(n):  # no batch API (a group sends one message per member too)
        noop.send()
    elapsed = time.perf_counter() - started
    broker.close()
    return elapsed


async def _taskiq(n: int, single: bool) -> float:
    from benchmarks.peers.apps.taskiq_app import broker, noop

    await broker.startup()
    try:
        started = time.perf_counter()
        for _ in range(n):
            await noop.kiq()
        return time.perf_counter() - started
    finally:
        await broker.shutdown()


async def _arq(n: int, single: bool) -> float:
    from arq import create_pool

    from benchmarks.peers.apps.arq_app import WorkerSettings

    pool = await create_pool(WorkerSettings.redis_settings, default_queue_name=QUEUE)
    try:
        started = time.perf_counter()
        for _ in range(n):
            await pool.enqueue_job("noop")
        return time.perf_counter() - started
    finally:
        await pool.aclose()


async def _saq(n: int, single: bool) -> float:
    from benchmarks.peers.apps.saq_app import queue

    await queue.connect()
    try:
        started = time.perf_counter()
        for _ in range(n):
            await queue.enqueue("noop")
        return time.perf_counter() - started
    finally:
        await queue.disconnect()


async def _raw(n: int, single: bool) -> float:
    if URL.startswith("amqp"):
        from benchmarks.peers import raw_pika

        return await raw_pika.enqueue(n, single=single)
    from benchmarks.peers import raw_redis

    return await raw_redis.enqueue(n, single=single)


ENQUEUE: dict[str, Callable[[int, bool], Awaitable[float]]] = {
    "aioack": _aioack,
    "celery": _celery,
    "dramatiq": _dramatiq,
    "taskiq": _taskiq,
    "arq": _arq,
    "saq": _saq,
    "raw": _raw,
}


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
    n, single = int(argv[2]), "--single" in argv
    elapsed = asyncio.run(ENQUEUE[family](n, single))  # the enqueue loop only, set-up excluded
    print(json.dumps({"enqueue_per_s": n / elapsed}))


if __name__ == "__main__":
    main(sys.argv[1:])
