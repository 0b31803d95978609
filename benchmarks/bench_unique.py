"""What unique enqueue costs a publish: the same apply_async calls with and without unique_for.

    python benchmarks/bench_unique.py --publishes 2000

For each setup (broker + result backend): ``--publishes`` calls of
``apply_async``, timed, first plain, then with ``unique_for=60`` and a new
key each time (every call reserves its key, then publishes), then again
with the keys just used (every call finds its key held and publishes
nothing). Each is run one call at a time (latency) and as ``--concurrency``
calls at once (throughput: the Redis result backend sends the reserves of
concurrent calls in one pipeline, SQLite commits them in one transaction).
Reports microseconds per call and the ratio against plain publishes in the
same run. Figures vary on a shared machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aioack import App

REDIS_URL = os.environ.get("AIOACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AIOACK_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

Call = Callable[[int], Awaitable[Any]]


async def timed_us(call: Call, count: int, concurrency: int) -> float:
    """Microseconds per call: ``count`` calls, ``concurrency`` at a time."""
    started = time.perf_counter()
    for first in range(0, count, concurrency):
        await asyncio.gather(*(call(i) for i in range(first, min(first + concurrency, count))))
    return (time.perf_counter() - started) / count * 1e6


async def one(broker_url: str, results_url: str, count: int, concurrency: int) -> list[float]:
    """us per call: [plain, reserve+publish, held] one at a time, then the same at once."""
    run = uuid.uuid4().hex[:8]
    queue = f"bench-unique-{run}"
    app = App(broker=broker_url, results=results_url)

    @app.task(queue=queue, name="bench.unique.report")
    async def report(n: int) -> int:
        return n

    figures = []
    async with app:
        for width, tag in ((1, "seq"), (concurrency, "par")):

            def plain(i: int) -> Awaitable[Any]:
                return report.apply_async((i,))

            def reserved(i: int, tag: str = tag) -> Awaitable[Any]:
                return report.apply_async((i,), unique_for=60, unique_key=f"{run}-{tag}-{i}")

            await timed_us(plain, min(count, 100), width)  # warm up: connections, declare
            figures.append(await timed_us(plain, count, width))
            figures.append(await timed_us(reserved, count, width))
            figures.append(await timed_us(reserved, count, width))  # every key held now
        await app.broker.delete([queue])
    return figures


async def main(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp()
    setups = {
        "sqlite": (f"sqlite:///{tmp}/broker.db", f"sqlite:///{tmp}/results.db"),
        "redis": (REDIS_URL, REDIS_URL),
        "rabbitmq": (AMQP_URL, REDIS_URL),  # RabbitMQ keeps no state: Redis holds the keys
    }
    print(f"{args.publishes} calls, us per call; at once: {args.concurrency} calls at a time")
    header = f"{'broker':<10}{'':<9}{'plain':>9}{'unique':>9}{'ratio':>7}{'held':>9}{'ratio':>7}"
    print(header)
    for name in args.setups.split(","):
        figures = await one(*setups[name], args.publishes, args.concurrency)
        for how, (plain, unique, held) in (("one", figures[:3]), ("at once", figures[3:])):
            print(
                f"{name:<10}{how:<9}{plain:>9.1f}{unique:>9.1f}{unique / plain:>7.2f}"
                f"{held:>9.1f}{held / plain:>7.2f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--setups", default="sqlite,redis,rabbitmq")
    asyncio.run(main(parser.parse_args()))
