"""Dead-letter tools on each broker: how long listing, a filtered read, replay and purge take.

    python benchmarks/bench_dlq.py --letters 10000

For each broker (SQLite file, Redis, RabbitMQ quorum queue): N dead letters
of ~200-byte envelopes, half of one task, half of another; then, timed:

  * list: ``dead_letters(q, 100)``, the first page;
  * filtered: ``dead_letters(q, N, where=task B)``: a pass over every letter;
  * replay: ``replay_dead_letters(q, task A)``, batches of 100: half the letters
    move, the other half are looked at and left;
  * purge: ``purge_dead_letters(q, everything)``: the rest.

Figures vary on a shared 2-core machine; compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid

from aioack.brokers import Broker, DeadLetter, LetterFilter, broker_from_url
from aioack.message import Message

REDIS_URL = os.environ.get("AIOACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AIOACK_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def _fill(broker: Broker, queue: str, letters: int) -> None:
    await broker.declare([queue])
    for start in range(0, letters, 50):
        await asyncio.gather(
            *(
                broker.add_dead_letter(
                    DeadLetter(
                        queue=queue,
                        reason="failed",
                        body=Message(id=f"m{n}", task="bench.a" if n % 2 else "bench.b").encode(),
                        error="ValueError: benchmark",
                        traceback="Traceback (most recent call last):\n  ...\nValueError\n",
                    )
                )
                for n in range(start, min(start + 50, letters))
            )
        )


async def _timed(what: str, looked_at: int, step: object) -> None:
    started = time.perf_counter()
    result = await step  # type: ignore[misc]
    elapsed_s = time.perf_counter() - started
    count = result if isinstance(result, int) else len(result)
    rate = looked_at / elapsed_s
    print(f"  {what:<9} {count:>6} taken of {looked_at:>6} in {elapsed_s:6.3f}s ({rate:>7.0f}/s)")


async def bench(name: str, url: str, letters: int) -> None:
    broker, queue = broker_from_url(url), f"bench-dlq-{uuid.uuid4().hex[:8]}"
    await broker.connect()
    try:
        await _fill(broker, queue, letters)
        print(f"{name}: {letters} dead letters")
        await _timed("list", 100, broker.dead_letters(queue, 100))
        task_b = LetterFilter(tasks=["bench.b"])
        await _timed("filtered", letters, broker.dead_letters(queue, letters, where=task_b))
        task_a = LetterFilter(tasks=["bench.a"])
        await _timed("replay", letters, broker.replay_dead_letters(queue, task_a))
        await _timed("purge", letters // 2, broker.purge_dead_letters(queue, LetterFilter()))
    finally:
        await broker.delete([queue])
        await broker.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in (
            ("sqlite", f"sqlite:///{tmp}/bench.db"),
            ("redis", REDIS_URL),
            ("rabbitmq", AMQP_URL),
        ):
            await bench(name, url, args.letters)


if __name__ == "__main__":
    asyncio.run(main())
