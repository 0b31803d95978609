"""What a per-key concurrency limit costs in extra deliveries (docs/task-control.md).

    python benchmarks/bench_concurrency_churn.py --tasks 1000 --keys 10 --workers 2

``--tasks`` runs of one task with ``limit_concurrency=1`` keyed over
``--keys`` keys (drawn at random, ``--seed``), each sleeping ``--run-ms``, all published before
``--workers`` workers (in this process, ``--concurrency`` each) start. A
run whose key is full goes back to the broker with a delay (DEFER); every
time it comes back is one more delivery. Reports deliveries per task beyond
the first, the time to drain, and that time against the floor (tasks per
key x run time: the keys run one run at a time). ``--fixed-delay S``
replaces the turn-based waits with a fixed delay, for comparison.
Figures vary on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections import Counter

from aioack import App, Hook
from aioack.brokers import broker_from_url
from aioack.hooks import DeliveryEvent
from aioack.results import ResultBackend
from aioack.results.redis import RedisResultBackend
from aioack.results.sqlite import SQLiteResultBackend
from aioack.worker import slotwaits

REDIS_URL = os.environ.get("AIOACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AIOACK_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


class Deliveries(Hook):
    def __init__(self) -> None:
        self.count = 0

    def on_received(self, event: DeliveryEvent) -> None:
        self.count += 1


def backends(name: str, directory: str) -> tuple[str, ResultBackend]:
    if name == "sqlite":
        return f"sqlite:///{directory}/broker.db", SQLiteResultBackend(
            f"sqlite:///{directory}/results.db"
        )
    results = RedisResultBackend(REDIS_URL, key_prefix=f"bench-churn-{os.getpid()}")
    return (REDIS_URL if name == "redis" else AMQP_URL), results


async def one(name: str, args: argparse.Namespace) -> tuple[float, float, float]:
    broker_url, results = backends(name, tempfile.mkdtemp())
    options = {"poll_interval": 0.01} if name in ("redis", "sqlite") else {}
    app = App(broker=broker_from_url(broker_url, **options), results=results)
    queue, done = f"bench-churn-{os.getpid()}", asyncio.Event()
    runs: Counter[int] = Counter()

    @app.task(queue=queue, limit_concurrency=1, concurrency_key="key", track_started=False)
    async def work(key: int, n: int) -> None:
        await asyncio.sleep(args.run_ms / 1000)
        runs[n] += 1
        if len(runs) == args.tasks:
            done.set()

    await app.connect()
    await app.broker.declare([queue])
    rng = random.Random(args.seed)  # keys in random order: round robin never collides
    for n in range(args.tasks):
        await work.delay(rng.randrange(args.keys), n)
    counted = [Deliveries() for _ in range(args.workers)]
    workers = [app.worker([queue], concurrency=args.concurrency, hooks=[c]) for c in counted]
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for worker in workers:
            group.create_task(worker.run())
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - started
        for worker in workers:
            worker.stop()
    assert all(v == 1 for v in runs.values()), "a run ran twice"
    await app.broker.delete([queue])
    if isinstance(results, RedisResultBackend):
        keys = [k async for k in results.client.scan_iter(f"{results.prefix}:*")]
        if keys:
            await results.client.delete(*keys)
    await app.aclose()
    extra = (sum(c.count for c in counted) - args.tasks) / args.tasks
    floor_s = args.tasks / args.keys * args.run_ms / 1000
    return extra, elapsed, elapsed / floor_s


async def main(args: argparse.Namespace) -> None:
    if args.fixed_delay is not None:
        fixed = args.fixed_delay
        slotwaits.SlotWaits.delay_s = lambda self, *_: fixed  # type: ignore[method-assign]
    waits = f"fixed {args.fixed_delay}s" if args.fixed_delay is not None else "turns"
    print(
        f"{args.tasks} tasks over {args.keys} keys, limit 1, {args.run_ms} ms each, "
        f"{args.workers} worker(s) x {args.concurrency}, waits: {waits}"
    )
    print(f"{'broker':<10}{'extra/task':>12}{'drain s':>10}{'x floor':>9}")
    for name in args.brokers.split(","):
        extra, elapsed, ratio = await one(name, args)
        print(f"{name:<10}{extra:>12.2f}{elapsed:>10.2f}{ratio:>9.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--run-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fixed-delay", type=float, default=None)
    parser.add_argument("--brokers", default="redis,sqlite,rabbitmq")
    asyncio.run(main(parser.parse_args()))
