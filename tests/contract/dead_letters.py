"""Helpers of the dead-letter contract tests: letters with known ids, and what the
broker holds afterwards (what is counted is what the broker holds, never what
a call said)."""

from __future__ import annotations

from aioack.brokers import Broker, DeadLetter
from aioack.message import Message, decode


async def add_letters(broker: Broker, queue: str, ids: list[str]) -> None:
    for mid in ids:  # one by one: the order is part of what is checked
        body = Message(id=mid, task="t").encode()
        await broker.add_dead_letter(
            DeadLetter(queue=queue, reason="failed", body=body, message_id=mid)
        )


async def queued(broker: Broker, queue: str) -> list[str]:
    """The message ids in ``queue``, drained (acked) in order."""
    consumer = await broker.consume([queue], prefetch=50)
    ids = []
    while (delivery := await consumer.get(0.5)) is not None:
        ids.append(decode(delivery.body).id)
        await broker.ack(delivery)
    await consumer.close()
    return ids


async def dead(broker: Broker, queue: str) -> list[str | None]:
    """The message ids of ``queue``'s dead letters, oldest first."""
    return [letter.message_id for letter in await broker.dead_letters(queue, 1000)]
