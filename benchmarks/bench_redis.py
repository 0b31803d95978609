"""No-op tasks through one aioack worker process on Redis vs a raw redis-py loop, same run.

    python benchmarks/bench_redis.py --tasks 20000 --concurrency 50 --prefetch 100

Raw baselines, on the same Redis:
  * consume: one loop of XREADGROUP COUNT <prefetch> + one XACK per batch (pipelined);
  * enqueue: XADD one at a time; XADD pipelined in batches of 500.
aioack:
  * consume: N ``noop`` messages already queued, then one
    ``python -m aioack worker benchmarks.bench_redis:app`` process; timed from
    its first delivery to the queue being empty (envelope decode, AckManager,
    concurrency limit, fenced Lua acks batched per loop iteration included);
  * enqueue: ``noop.delay()`` one at a time; ``broker.publish_many`` of
    encoded envelopes.
Figures vary on a shared 2-core machine; compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

from aioack import App
from aioack.brokers.redis import RedisBroker
from aioack.message import Message, new_task_id

URL = os.environ.get("AIOACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RAW_STREAM, QUEUE = "bench-raw-stream", "bench-aioack"
ROOT = Path(__file__).resolve().parents[1]

app = App(broker=URL)


@app.task(name="bench.noop", queue=QUEUE)
async def noop() -> None:
    return None


async def raw_consume(client: Redis, n: int, prefetch: int) -> float:
    """Tasks per second: XREADGROUP in batches, one XACK per batch."""
    await client.delete(RAW_STREAM)
    await client.xgroup_create(RAW_STREAM, "g", id="0", mkstream=True)
    await raw_enqueue_batched(client, n)
    start = time.perf_counter()
    seen = 0
    while seen < n:
        reply = await client.xreadgroup("g", "c", {RAW_STREAM: ">"}, count=prefetch, block=100)
        for _, entries in reply or []:
            ids = [entry_id for entry_id, _ in entries]
            pipe = client.pipeline(transaction=False)
            pipe.xack(RAW_STREAM, "g", *ids)
            await pipe.execute()
            seen += len(ids)
    rate = n / (time.perf_counter() - start)
    await client.delete(RAW_STREAM)
    return rate


async def raw_enqueue_single(client: Redis, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await client.xadd(RAW_STREAM, {"body": b'{"noop":true}', "id": str(i)})
    return n / (time.perf_counter() - start)


async def raw_enqueue_batched(client: Redis, n: int) -> float:
    start = time.perf_counter()
    for offset in range(0, n, 500):
        pipe = client.pipeline(transaction=False)
        for i in range(offset, min(n, offset + 500)):
            pipe.xadd(RAW_STREAM, {"body": b'{"noop":true}', "id": str(i)})
        await pipe.execute()
    return n / (time.perf_counter() - start)


async def aioack_enqueue_single(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await noop.delay()
    return n / (time.perf_counter() - start)


async def aioack_enqueue_batched(broker: RedisBroker, n: int) -> float:
    start = time.perf_counter()
    for offset in range(0, n, 500):
        items = []
        for _ in range(offset, min(n, offset + 500)):
            message = Message(id=new_task_id(), task=noop.name)
            items.append((message.id, message.encode()))
        await broker.publish_many(QUEUE, items)
    return n / (time.perf_counter() - start)


async def aioack_consume(broker: RedisBroker, n: int, args: argparse.Namespace) -> float:
    """Tasks per second through one worker process, from its first delivery to an empty queue."""
    await broker.delete([QUEUE])
    await aioack_enqueue_batched(broker, n)
    argv = [sys.executable, "-m", "aioack", "worker", "benchmarks.bench_redis:app", "-Q", QUEUE]
    argv += ["-c", str(args.concurrency), "--prefetch", str(args.prefetch)]
    argv += ["--broker", URL, "--log-level", args.log_level]
    worker = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        start = None
        while True:
            stats = await broker.stats(QUEUE)
            if start is None and stats.ready < n:
                start = time.perf_counter()
            if start is not None and stats.pending == 0:
                return n / (time.perf_counter() - start)
            await asyncio.sleep(0.005)
    finally:
        worker.terminate()
        await worker.wait()
        await broker.delete([QUEUE])


async def main(args: argparse.Namespace) -> None:
    client = Redis.from_url(URL)
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    async with app:
        await broker.delete([QUEUE])
        figures = {
            "consume raw": await raw_consume(client, args.tasks, args.prefetch),
            "consume aioack": await aioack_consume(broker, args.tasks, args),
            "enqueue single raw": await raw_enqueue_single(client, args.enqueue),
            "enqueue single aioack": await aioack_enqueue_single(args.enqueue),
            "enqueue batched raw": await raw_enqueue_batched(client, args.tasks),
            "enqueue batched aioack": await aioack_enqueue_batched(broker, args.tasks),
        }
        await client.delete(RAW_STREAM)
        await broker.delete([QUEUE])
    await client.aclose()
    for name, rate in figures.items():
        print(f"{name:24} {rate:10.0f} /s")
    for what in ("consume", "enqueue single", "enqueue batched"):
        ratio = figures[f"{what} aioack"] / figures[f"{what} raw"]
        print(f"{what:24} aioack/raw = {ratio:.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--enqueue", type=int, default=5000, help="single enqueues to time")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--log-level", default="WARNING", help="the worker's (WARNING)")
    asyncio.run(main(parser.parse_args()))
