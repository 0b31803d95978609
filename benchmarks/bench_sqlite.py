"""The SQLite broker against the Redis broker, same machine, same run.

    python benchmarks/bench_sqlite.py --tasks 20000 --concurrency 50 --prefetch 100

For each broker:
  * consume: N no-op messages already queued, then one
    ``python -m aioack worker benchmarks.bench_sqlite:app`` process; timed
    from its first delivery to the queue being empty;
  * enqueue batched: ``publish_many`` of encoded envelopes, 500 per call;
  * enqueue single: ``noop.delay()`` one at a time;
  * latency at idle: a worker waiting on an empty queue, one task published
    every 20 ms; the time from ``delay()`` to the task body starting (in the
    worker process; both read the same clock), p50 and p99.
SQLite runs with its defaults (``synchronous=full``: every commit on disk,
``poll_interval`` 0.02 s). Figures vary on a shared 2-core machine; compare
the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aioack import App
from aioack.brokers import Broker
from aioack.message import Message, new_task_id

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "bench-broker"
REDIS_URL = os.environ.get("AIOACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Where the latency probe's worker writes its start times (set by the benchmark).
LATENCY_FILE = os.environ.get("AIOACK_BENCH_LATENCY_FILE", os.devnull)

app = App()  # the benchmark names the broker (--broker) for each run


@app.task(name="bench.noop", queue=QUEUE)
async def noop() -> None:
    return None


@app.task(name="bench.stamp", queue=QUEUE)
async def stamp(sent: float) -> None:
    with open(LATENCY_FILE, "a") as out:  # noqa: ASYNC230 (tiny append, benchmark only)
        out.write(f"{time.time() - sent}\n")


def start_worker(url: str, args: argparse.Namespace, env: dict[str, str] | None = None) -> Any:
    argv = [sys.executable, "-m", "aioack", "worker", "benchmarks.bench_sqlite:app", "-Q", QUEUE]
    argv += ["-c", str(args.concurrency), "--prefetch", str(args.prefetch)]
    argv += ["--broker", url, "--log-level", "WARNING"]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, env=env)


async def enqueue_batched(broker: Broker, n: int) -> float:
    start = time.perf_counter()
    for offset in range(0, n, 500):
        items = []
        for _ in range(offset, min(n, offset + 500)):
            message = Message(id=new_task_id(), task=noop.name)
            items.append((message.id, message.encode()))
        await broker.publish_many(QUEUE, items)
    return n / (time.perf_counter() - start)


async def enqueue_single(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await noop.delay()
    return n / (time.perf_counter() - start)


async def consume(broker: Broker, url: str, n: int, args: argparse.Namespace) -> float:
    await broker.delete([QUEUE])
    await enqueue_batched(broker, n)
    worker = start_worker(url, args)
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
        worker.wait(30)
        await broker.delete([QUEUE])


async def latency(broker: Broker, url: str, samples: int, args: argparse.Namespace) -> list[float]:
    await broker.delete([QUEUE])
    out = Path(tempfile.mkdtemp()) / "latency"
    out.touch()
    worker = start_worker(url, args, env={**os.environ, "AIOACK_BENCH_LATENCY_FILE": str(out)})
    try:
        await asyncio.sleep(1.5)  # the worker is up and idle
        for _ in range(samples):
            await stamp.delay(time.time())
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + 10
        while len(out.read_text().split()) < samples and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return sorted(float(x) for x in out.read_text().split())
    finally:
        worker.terminate()
        worker.wait(30)
        await broker.delete([QUEUE])


async def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    app.use_broker(url)
    broker = app.broker
    async with app:
        figures = {
            "consume": await consume(broker, url, args.tasks, args),
            "enqueue batched": await enqueue_batched(broker, args.tasks),
            "enqueue single": await enqueue_single(args.enqueue),
        }
        await broker.delete([QUEUE])
        waits = await latency(broker, url, args.samples, args)
    figures["latency p50 ms"] = statistics.median(waits) * 1000
    figures["latency p99 ms"] = waits[min(len(waits) - 1, int(len(waits) * 0.99))] * 1000
    return figures


async def main(args: argparse.Namespace) -> None:
    sqlite_url = f"sqlite:///{tempfile.mkdtemp(prefix='aioack-bench-')}/bench.db"
    results = {"sqlite": await measure(sqlite_url, args), "redis": await measure(REDIS_URL, args)}
    print(f"{'':22} {'sqlite':>10} {'redis':>10} {'sqlite/redis':>13}")
    for what in results["sqlite"]:
        s, r = results["sqlite"][what], results["redis"][what]
        ratio = "" if what.startswith("latency") else f"{s / r:12.0%}"
        print(f"{what:22} {s:10.1f} {r:10.1f} {ratio}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--enqueue", type=int, default=3000, help="single enqueues to time")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--prefetch", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
