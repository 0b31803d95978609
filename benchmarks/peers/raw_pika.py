"""The physical limit on RabbitMQ: one aio-pika consumer, basic.qos(prefetch), the
no-op body and one ack per message, on a quorum queue as aioack's.
``python -m benchmarks.peers.raw_pika``.

When the body waits (the I/O-bound and memory scenarios), each message runs
in its own asyncio task; the prefetch (BENCH_PREFETCH) bounds how many at once.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aio_pika

from benchmarks.peers import marker

URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-raw")
PREFETCH = int(os.environ.get("BENCH_PREFETCH", "100"))
ARGUMENTS = {"x-queue-type": "quorum"}


async def main() -> None:
    connection = await aio_pika.connect(URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.declare_queue(QUEUE, durable=True, arguments=ARGUMENTS)
    running: set[asyncio.Task[None]] = set()

    async def run(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await marker.wait()
        marker.done()
        await message.ack()

    async with queue.iterator() as messages:
        async for message in messages:
            if marker.WAITS:
                task = asyncio.create_task(run(message))
                running.add(task)
                task.add_done_callback(running.discard)
                continue
            marker.done()
            await message.ack()


@asynccontextmanager
async def producer() -> AsyncIterator[
    tuple[Callable[[], Awaitable[Any]], Callable[[int], Awaitable[Any]]]
]:
    """``(one, many)``: one persistent message, its confirm awaited; ``many(k)``: k of
    them, the confirms awaited together."""
    connection = await aio_pika.connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(QUEUE, durable=True, arguments=ARGUMENTS)

    def one() -> Awaitable[Any]:
        message = aio_pika.Message(b'{"task":"noop"}', delivery_mode=2)
        return channel.default_exchange.publish(message, routing_key=QUEUE)

    async def many(k: int) -> None:
        await asyncio.gather(*(one() for _ in range(k)))

    try:
        yield one, many
    finally:
        await connection.close()


async def delete() -> None:
    connection = await aio_pika.connect(URL)
    channel = await connection.channel()
    await channel.queue_delete(QUEUE)
    await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
