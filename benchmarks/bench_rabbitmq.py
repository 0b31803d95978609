"""No-op tasks through one aioack worker on RabbitMQ vs a raw aio-pika loop, same run.

    python benchmarks/bench_rabbitmq.py --tasks 20000 --concurrency 50 --prefetch 100

Raw baseline, same queue type (quorum) and settings:
  * publish: one persistent message at a time, each confirmed (like ``delay()``);
  * consume: basic.qos(prefetch), ack each message.
aioack: ``noop.delay()`` N times, then ``worker.run(burst=True)`` in this process
(encode/decode of the envelope, AckManager, concurrency limit, acks included).
Figures vary on a shared 2-core machine; compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import aio_pika

from aioack import App
from aioack.brokers.rabbitmq import RabbitMQBroker

URL = os.environ.get("AIOACK_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RAW_QUEUE, AIOACK_QUEUE = "bench-raw", "bench-aioack"

app = App(broker=URL)


@app.task(queue=AIOACK_QUEUE)
async def noop() -> None:
    return None


async def raw_round(n: int, prefetch: int) -> tuple[float, float]:
    """Messages per second published (confirmed one by one) and consumed (ack each)."""
    connection = await aio_pika.connect_robust(URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            RAW_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        start = time.perf_counter()
        for i in range(n):
            message = aio_pika.Message(
                b'{"noop":true}', message_id=str(i), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            await channel.default_exchange.publish(message, RAW_QUEUE, mandatory=True)
        published_s = time.perf_counter() - start

        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=prefetch)
        consumer_queue = await consumer_channel.get_queue(RAW_QUEUE, ensure=False)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen == n:
                done.set()

        start = time.perf_counter()
        await consumer_queue.consume(on_message)
        await done.wait()
        consumed_s = time.perf_counter() - start
        await queue.delete(if_unused=False, if_empty=False)
        return n / published_s, n / consumed_s
    finally:
        await connection.close()


async def aioack_round(n: int, concurrency: int, prefetch: int) -> tuple[float, float]:
    broker = app.broker
    assert isinstance(broker, RabbitMQBroker)
    await app.connect()
    try:
        await broker.delete([AIOACK_QUEUE])
        await broker.declare([AIOACK_QUEUE])
        start = time.perf_counter()
        for _ in range(n):
            await noop.delay()
        published_s = time.perf_counter() - start
        worker = app.worker([AIOACK_QUEUE], concurrency=concurrency, prefetch=prefetch)
        start = time.perf_counter()
        await worker.run(burst=True)
        consumed_s = time.perf_counter() - start
        stats = await broker.stats(AIOACK_QUEUE)
        assert stats.pending == 0 and stats.dead == 0, stats
        await broker.delete([AIOACK_QUEUE])
        return n / published_s, n / consumed_s
    finally:
        await app.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--prefetch", type=int, default=100)
    args = parser.parse_args()
    raw_pub, raw_con = await raw_round(args.tasks, args.prefetch)
    ack_pub, ack_con = await aioack_round(args.tasks, args.concurrency, args.prefetch)
    print(f"tasks={args.tasks} concurrency={args.concurrency} prefetch={args.prefetch}")
    for what, raw, ours in (("publish", raw_pub, ack_pub), ("consume", raw_con, ack_con)):
        print(f"{what}  raw aio-pika {raw:8.0f}/s   aioack {ours:8.0f}/s   {ours / raw:5.0%}")


if __name__ == "__main__":
    asyncio.run(main())
