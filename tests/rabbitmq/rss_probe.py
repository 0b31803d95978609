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

from aioack import App, Hook
from aioack._memory import release_freed_memory
from aioack.brokers.rabbitmq import RabbitMQBroker
from aioack.hooks import SettledEvent
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


class DeadLetterReasons(Hook):
    """The reason of each dead letter, as the worker settled it."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def on_dead_letter(self, event: SettledEvent) -> None:
        self.reasons.append(event.reason)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def main(url: str, rounds: int) -> None:
    queue = f"rss-{uuid.uuid4().hex[:8]}"
    broker = RabbitMQBroker(url)
    app, letters = App(broker=broker), DeadLetterReasons()
    app.add_hook(letters)

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
        # Each body was refused for its size and kept as a dead letter. Counted,
        # not read back: reading 100 MB of letters would measure the reader.
        assert letters.reasons == ["too_large"] * rounds, letters.reasons
        assert (await broker.stats(queue)).dead == rounds
    finally:
        await broker.delete([queue])
        await app.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
