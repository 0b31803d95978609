"""What a queue limit costs a publish: the same publishes with and without a max_length.

    python benchmarks/bench_limits.py --backlog 9000 --publishes 2000

For each broker: a queue already holding ``--backlog`` waiting messages, then
``--publishes`` single ``broker.publish()`` calls, timed, once into an
unlimited queue and once into a queue with a max_length above what it will
hold (so every publish is checked and taken). Reports microseconds per
publish and the ratio. SQLite counts the waiting rows in the publish's
transaction (up to max_length index entries), Redis runs one script instead
of an XADD, memory counts its lists, RabbitMQ checks on the server. Figures
vary on a shared machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from aioack import QueueLimit
from aioack.brokers import Broker, broker_from_url

REDIS_URL = os.environ.get("AIOACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AIOACK_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def publish_us(broker: Broker, queue: str, backlog: int, publishes: int) -> float:
    await broker.declare([queue])
    body = b'{"v":1}' * 20
    await broker.publish_many(queue, [(f"b{i}", body) for i in range(backlog)])
    started = time.perf_counter()
    for i in range(publishes):
        await broker.publish(queue, body, message_id=f"p{i}")
    elapsed = time.perf_counter() - started
    await broker.delete([queue])
    return elapsed / publishes * 1e6


async def one(url: str, backlog: int, publishes: int) -> tuple[float, float]:
    broker = broker_from_url(url)
    limit = QueueLimit(max_length=backlog + publishes + 1)
    broker.use_limits({"bench-limited": limit})
    async with broker:
        free = await publish_us(broker, "bench-free", backlog, publishes)
        limited = await publish_us(broker, "bench-limited", backlog, publishes)
    return free, limited


async def main(args: argparse.Namespace) -> None:
    urls = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tempfile.mkdtemp()}/bench.db",
        "redis": REDIS_URL,
        "rabbitmq": AMQP_URL,
    }
    print(f"backlog {args.backlog}, {args.publishes} publishes, us per publish")
    print(f"{'broker':<10}{'no limit':>10}{'max_length':>12}{'ratio':>8}")
    for name in args.brokers.split(","):
        free, limited = await one(urls[name], args.backlog, args.publishes)
        print(f"{name:<10}{free:>10.1f}{limited:>12.1f}{limited / free:>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=9000)
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--brokers", default="memory,sqlite,redis,rabbitmq")
    asyncio.run(main(parser.parse_args()))
