"""What the Prometheus metrics hook costs a worker per task: off, and on.

    python benchmarks/bench_metrics.py --tasks 20000 --concurrency 50 --rounds 9

The method of bench_hooks.py: no-op tasks on the in-process broker (no
network: the worker's own cost is all there is to see), each variant timed
from the worker's start to the last task body, rounds interleaved so a slow
moment of the machine hits every variant alike. Reports the median
microseconds per task and the difference to the same run's baseline (no
hook). A third variant, a hook observing the same four events and doing
nothing, separates what any hook costs (the worker building and passing
events) from what counting costs. Each round's scrape checks that the hook
counted every task.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aioack import App
from aioack.brokers import MemoryBroker
from aioack.message import Message
from aioack.observe.metrics import PrometheusMetrics


async def us_per_task(n: int, concurrency: int, hooks: list[object]) -> float:
    app = App(broker=MemoryBroker())
    done = asyncio.Event()
    count = 0
    finished_at = 0.0

    @app.task(name="bench.noop", queue="bench")
    async def noop() -> None:
        nonlocal count, finished_at
        count += 1
        if count == n:
            finished_at = time.perf_counter()
            done.set()

    async with app:
        bodies = [(f"m{i}", Message(id=f"m{i}", task=noop.name).encode()) for i in range(n)]
        await app.broker.publish_many("bench", bodies)
        worker = app.worker(
            ["bench"], concurrency=concurrency, prefetch=2 * concurrency, hooks=hooks
        )
        start = time.perf_counter()
        async with worker:
            await done.wait()
    return (finished_at - start) / n * 1e6


class SameEventsNoop:
    """The events the metrics hook observes once per task, each doing nothing."""

    def on_received(self, event: object) -> None: ...
    def on_started(self, event: object) -> None: ...
    def on_finished(self, event: object) -> None: ...
    def on_settled(self, event: object) -> None: ...


def acks_counted(metrics: PrometheusMetrics) -> float:
    text = generate_latest(metrics.registry).decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "aioack_tasks_settled_total" and sample.labels["action"] == "ack"
    )


async def main(n: int, concurrency: int, rounds: int) -> None:
    variants: dict[str, list[float]] = {"metrics off": [], "no-op hook": [], "metrics on": []}
    for _ in range(rounds):
        variants["metrics off"].append(await us_per_task(n, concurrency, []))
        variants["no-op hook"].append(await us_per_task(n, concurrency, [SameEventsNoop()]))
        metrics = PrometheusMetrics()
        variants["metrics on"].append(await us_per_task(n, concurrency, [metrics]))
        assert acks_counted(metrics) == n, "the hook did not count every task"
    base = statistics.median(variants["metrics off"])
    for name, samples in variants.items():
        median = statistics.median(samples)
        print(
            f"{name:12s} median {median:6.2f} us/task  (+{median - base:5.2f} us)  "
            f"rounds: {', '.join(f'{s:.1f}' for s in samples)}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.concurrency, args.rounds))
