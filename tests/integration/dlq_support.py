"""Helpers of the ``dlq`` command line tests on the brokers other processes share:
letters with known ids, and what the broker holds afterwards (what is counted
is what the broker holds, never what the command said)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from aioack import QueueLimit
from aioack.brokers import Broker, DeadLetter, broker_from_url
from aioack.message import Message, decode
from tests.conftest import broker_url

#: The brokers a ``dlq`` command line reaches from another process.
KINDS = ["sqlite", "redis", "rabbitmq"]
Limits = Mapping[str, QueueLimit] | None


def url_for(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/dlq.db" if kind == "sqlite" else broker_url(kind)


async def connected(url: str, limits: Limits = None) -> Broker:
    """A broker on ``url``, with the queue limits its workers know (RabbitMQ declares
    them on the queue)."""
    broker = broker_from_url(url)
    if limits:
        broker.use_limits(limits)
    await broker.connect()
    return broker


async def dead_letter(url: str, queue: str, ids: list[str], limits: Limits = None) -> None:
    """One dead letter per message id, in order."""
    broker = await connected(url, limits)
    try:
        await broker.declare([queue])
        for mid in ids:
            body = Message(id=mid, task="t").encode()
            await broker.add_dead_letter(
                DeadLetter(queue=queue, reason="failed", body=body, message_id=mid)
            )
    finally:
        await broker.aclose()


async def held(url: str, queue: str, limits: Limits = None) -> tuple[list[str], list[str]]:
    """(message ids queued, drained in order; message ids of the dead letters)."""
    broker = await connected(url, limits)
    try:
        dead = [letter.message_id or "" for letter in await broker.dead_letters(queue, 1000)]
        consumer = await broker.consume([queue], prefetch=50)
        queued = []
        while (delivery := await consumer.get(0.5)) is not None:
            queued.append(decode(delivery.body).id)
            await broker.ack(delivery)
        await consumer.close()
        return queued, dead
    finally:
        await broker.aclose()


async def delete(url: str, queue: str) -> None:
    broker = await connected(url)
    await broker.delete([queue])
    await broker.aclose()


@contextlib.contextmanager
def deleted_after(url: str, queue: str) -> Iterator[None]:
    try:
        yield
    finally:
        asyncio.run(delete(url, queue))
