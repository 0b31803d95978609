"""The physical limit on RabbitMQ: one aio-pika consumer, basic.qos(prefetch), the
no-op body and one ack per message, on a quorum queue as aioack's.
``python -m benchmarks.peers.raw_pika``.
"""

import asyncio
import os
import time
from collections.abc import Awaitable

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
    async with queue.iterator() as messages:
        async for message in messages:
            marker.done()
            await message.ack()


async def enqueue(n: int, *, single: bool = False) -> float:
    """Persistent messages, each confirmed: one confirm waited at a time, or 500
    awaited together. Returns the seconds the publishes took."""
    connection = await aio_pika.connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(QUEUE, durable=True, arguments=ARGUMENTS)

    def publish() -> Awaitable[object]:
        message = aio_pika.Message(b'{"task":"noop"}', delivery_mode=2)
        return channel.default_exchange.publish(message, routing_key=QUEUE)

    started = time.perf_counter()
    step = 1 if single else 500
    for offset in range(0, n, step):
        await asyncio.gather(*(publish() for _ in range(offset, min(n, offset + step))))
    elapsed = time.perf_counter() - started
    await connection.close()
    return elapsed


async def delete() -> None:
    connection = await aio_pika.connect(URL)
    channel = await connection.channel()
    await channel.queue_delete(QUEUE)
    await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
