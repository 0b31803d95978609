"""Run as a script: a worker dead-letters raw 20 MB bodies; print its RSS after each.

Usage: python -m tests.rabbitmq.rss_probe AMQP_URL ROUNDS. The bodies are
published by a child process, so only the worker's memory is measured here.
Prints one line per round: "rss_growth_mb <float>".
"""

from __future__ import annotations

import asyncio
import gc
import sys
import uuid

from aioack import App
from aioack._memory import release_freed_memory
from aioack.brokers.rabbitmq import RabbitMQBroker
from aioack.testing import run_until_idle

SIZE = 20 * 1024 * 1024
PUBLISH = """
import asyncio, sys, aio_pika
async def main():
    connection = await aio_pika.connect(sys.argv[1])
    channel = await connection.channel()
    body = b"\\x00" * int(sys.argv[3])
    await channel.default_exchange.publish(
        aio_pika.Message(body, message_id="big", delivery_mode=2), routing_key=sys.argv[2]
    )
    await connection.close()
asyncio.run(main())
"""


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def main(url: str, rounds: int) -> None:
    queue = f"rss-{uuid.uuid4().hex[:8]}"
    broker = RabbitMQBroker(url)
    app = App(broker=broker)

    @app.task(queue=queue)
    async def noop() -> None:
        return None

    await app.connect()
    try:
        await broker.declare([queue])
        await noop.delay()
        await run_until_idle(app, [queue])  # warm up every code path
        gc.collect()
        release_freed_memory()
        baseline = rss_mb()
        for _ in range(rounds):
            publisher = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUBLISH, url, queue, str(SIZE)
            )
            assert await publisher.wait() == 0
            await run_until_idle(app, [queue])
            gc.collect()
            print(f"rss_growth_mb {rss_mb() - baseline:.1f}", flush=True)
        letters = await broker.dead_letters(queue, limit=rounds)
        assert [d.reason for d in letters] == ["too_large"] * rounds, letters
    finally:
        await broker.delete([queue])
        await app.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
