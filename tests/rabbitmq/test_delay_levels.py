"""Delayed messages are never lost by aioack's own housekeeping on RabbitMQ.

The delay buckets this design replaced were quorum queues with
``x-expires = 2 x delay + 60 s``; RabbitMQ 3.10 does not reset a quorum
queue's expiry on a re-declare, so a bucket was deleted (with the messages
in it, not dead-lettered) 64 s after it was created for a 2 s delay, and
delayed publishes failed with NO_ROUTE for a while after. These tests run
longer than that period and count messages on the broker: every publish
that returned must arrive.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aioack.brokers import Consumer
from aioack.brokers.rabbitmq import RabbitMQBroker
from tests.support import unique, wait_until

pytestmark = pytest.mark.slow

#: Longer than the old buckets' lifetime for a 2 s delay (2 x 2 s + 60 s).
TRAFFIC_S = 70.0
DELAY_S = 2.0


async def _drain(rabbit: RabbitMQBroker, consumer: Consumer, into: list[bytes]) -> None:
    while True:
        delivery = await consumer.get(0.5)
        if delivery is not None:
            into.append(delivery.body)
            await rabbit.ack(delivery)


async def test_steady_delayed_traffic_and_an_idle_queue_reused_lose_nothing(
    rabbit: RabbitMQBroker, queue_name: str
) -> None:
    idle = unique("rq-idle")
    await rabbit.declare([queue_name, idle])
    busy_consumer = await rabbit.consume([queue_name], prefetch=50)
    idle_consumer = await rabbit.consume([idle], prefetch=5)
    sent: list[bytes] = []
    received: list[bytes] = []
    idle_received: list[bytes] = []
    drains = [
        asyncio.create_task(_drain(rabbit, busy_consumer, received)),
        asyncio.create_task(_drain(rabbit, idle_consumer, idle_received)),
    ]
    try:
        # One delayed message on the idle queue, then nothing for the whole period.
        await rabbit.publish(idle, b"before", message_id="before", delay_s=DELAY_S)
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < TRAFFIC_S:
            body = b"%d" % n
            # Any failure here (NO_ROUTE once a bucket was gone) fails the test.
            await rabbit.publish(queue_name, body, message_id=body.decode(), delay_s=DELAY_S)
            sent.append(body)
            n += 1
            await asyncio.sleep(0.5)
        # The idle queue's delay path, reused after the whole period.
        await rabbit.publish(idle, b"after", message_id="after", delay_s=DELAY_S)
        await wait_until(
            lambda: len(received) >= len(sent) and len(idle_received) >= 2,
            timeout=DELAY_S + 10,
            message="every delayed message",
        )
        assert sorted(received) == sorted(sent), set(sent) - set(received)
        assert idle_received == [b"before", b"after"]
        for queue in (queue_name, idle):
            stats = await rabbit.stats(queue)
            assert (stats.delayed, stats.dead) == (0, 0), stats
    finally:
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        await busy_consumer.close()
        await idle_consumer.close()
        await rabbit.delete([idle])
