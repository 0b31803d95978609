"""What hooks cost a worker per task: none, and one observing every event.

    python benchmarks/bench_hooks.py --tasks 20000 --concurrency 50 --rounds 7

No-op tasks on the in-process broker (no network: the worker's own cost is
all there is to see), each variant timed from the worker's start to the
last task body, rounds interleaved so a slow moment of the machine hits
every variant alike. Reports the median microseconds per task and the
difference to the no-hook baseline of the same run.

``--no-hook-only`` runs just the baseline (used to compare against a
checkout from before hooks existed, where the hook variant cannot run).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from aioack import App
from aioack.brokers import MemoryBroker


class ObserveEverything:
    """A hook with every method, each doing nothing: the most one hook can cost."""

    def __init__(self) -> None:
        self.calls = 0

    def _seen(self, event: Any) -> None:
        self.calls += 1

    on_publish = on_received = on_started = on_finished = on_settled = _seen
    on_retry = on_dead_letter = on_lease_renewed = on_lost = _seen
    on_connection_lost = on_connection_restored = on_worker_started = _seen
    on_worker_stopping = _seen


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
        await app.broker.publish_many("bench", [(f"m{i}", _body(noop.name, i)) for i in range(n)])
        kwargs = {"hooks": hooks} if hooks else {}
        worker = app.worker(["bench"], concurrency=concurrency, prefetch=2 * concurrency, **kwargs)
        start = time.perf_counter()
        async with worker:
            await done.wait()
    return (finished_at - start) / n * 1e6


def _body(task: str, i: int) -> bytes:
    from aioack.message import Message

    return Message(id=f"m{i}", task=task).encode()


async def main(n: int, concurrency: int, rounds: int, no_hook_only: bool) -> None:
    variants: dict[str, list[float]] = {"no hook": []}
    if not no_hook_only:
        variants["one hook, every event"] = []
    for _ in range(rounds):
        variants["no hook"].append(await us_per_task(n, concurrency, []))
        if not no_hook_only:
            hook = ObserveEverything()
            variants["one hook, every event"].append(await us_per_task(n, concurrency, [hook]))
            assert hook.calls >= 3 * n, hook.calls  # received, started, finished, settled
    base = statistics.median(variants["no hook"])
    for name, samples in variants.items():
        median = statistics.median(samples)
        print(
            f"{name:24s} median {median:6.2f} us/task  (+{median - base:5.2f} us)  "
            f"rounds: {', '.join(f'{s:.1f}' for s in samples)}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-hook-only", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.concurrency, args.rounds, args.no_hook_only))
