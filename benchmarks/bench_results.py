"""What storing results on Redis costs a worker, and what track_started=False saves.

    python benchmarks/bench_results.py --tasks 5000 --concurrency 50

No-op tasks on the in-process broker (so only the result backend talks to
Redis), three ways in one process, each timed from publish-done to idle:
  * no result backend (the baseline);
  * Redis results, ``track_started=False``: one write per run (the final record);
  * Redis results, ``track_started=True`` (the default): STARTED + final record.
Figures vary on a shared 2-core machine; compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from aioack import App
from aioack.brokers import MemoryBroker
from aioack.results.redis import RedisResultBackend
from aioack.testing import run_until_idle

URL = os.environ.get("AIOACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = "aioack-bench-results"


async def tasks_per_s(n: int, concurrency: int, *, results: bool, track_started: bool) -> float:
    backend = RedisResultBackend(URL, key_prefix=PREFIX, result_expires=60) if results else None
    app = App(broker=MemoryBroker(), results=backend)

    @app.task(name="bench.noop", queue="bench", track_started=track_started)
    async def noop() -> None:
        return None

    async with app:
        for _ in range(n):
            await noop.delay()
        start = time.perf_counter()
        await run_until_idle(app, ["bench"], concurrency=concurrency)
        elapsed_s = time.perf_counter() - start
        if backend is not None:
            keys = [k async for k in backend.client.scan_iter(f"{PREFIX}:*")]
            for i in range(0, len(keys), 1000):
                await backend.client.delete(*keys[i : i + 1000])
    return n / elapsed_s


async def main(n: int, concurrency: int, rounds: int) -> None:
    for _ in range(rounds):
        base = await tasks_per_s(n, concurrency, results=False, track_started=False)
        final_only = await tasks_per_s(n, concurrency, results=True, track_started=False)
        started = await tasks_per_s(n, concurrency, results=True, track_started=True)
        print(
            f"no results {base:8.0f}/s | results, track_started=False {final_only:8.0f}/s "
            f"({final_only / base:4.0%}) | results, track_started=True {started:8.0f}/s "
            f"({started / base:4.0%}; {started / final_only:4.0%} of track_started=False)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.concurrency, args.rounds))
