"""A dead letter's time read back, on every broker: whatever a hostile writer stored
there, it is a bounded time or unknown, and unknown is taken by no age criterion.

Anyone who can write a broker's dead-letter store (an XADD to the dead stream,
a row in the SQLite file, a publish to ``q.dead``) can store any time; each
broker's letters are written here as such a writer would, then read back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from aioack.brokers import Broker, DeadLetter, LetterFilter
from aioack.brokers.deadletters import MAX_LETTER_TIME

pytestmark = pytest.mark.contract


async def _redis_store(broker: Broker, queue: str, at: Any) -> None:
    dead = broker._io.keys(queue).dead  # type: ignore[attr-defined]
    fields = {"reason": "failed", "body": b"x", "message_id": "hostile", "at": at}
    await broker._io.client.xadd(dead, fields)  # type: ignore[attr-defined]


async def _sqlite_store(broker: Broker, queue: str, at: Any) -> None:
    # Any process with the file open can write a row.
    def insert(conn: Any) -> None:
        conn.execute(
            "INSERT INTO dead_letters (queue, message_id, body, reason, detail, "
            "delivery_count, dead_lettered_at) VALUES (?, 'hostile', x'78', 'failed', '', 1, ?)",
            (queue, at),
        )

    await broker._running().run(insert)  # type: ignore[attr-defined]


async def _amqp_store(broker: Broker, queue: str, at: Any) -> None:
    headers = {"x-aioack-dl-reason": "failed", "x-aioack-dl-dead-lettered-at": at}
    await broker._publish(  # type: ignore[attr-defined]
        queue, b"x", "hostile", headers, 0.0, routing_key=f"{queue}.dead"
    )


STORES = {"redis": _redis_store, "sqlite": _sqlite_store, "rabbitmq": _amqp_store}
#: Times as a hostile writer stores them: text (Redis, RabbitMQ) or any SQLite value.
HOSTILE_TIMES = ["inf", "-inf", "nan", "1e300", "-1", "4294967297", "soon", ""]
SQLITE_TIMES = [math.inf, -math.inf, 1e300, -1.0, "soon", b"\x00", 2**62]


async def test_letter_times_nobody_can_trust_are_unknown_and_taken_by_no_age(
    broker: Broker, broker_kind: str, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    if broker_kind == "memory":
        # In-process: no one else writes. A letter handed over with such a time
        # is stamped when stored, as every broker stores it.
        for at in (math.inf, math.nan, -1e300, None):
            await broker.add_dead_letter(
                DeadLetter(queue=queue, reason="failed", body=b"x", dead_lettered_at=at)
            )
        stamps = [letter.dead_lettered_at for letter in await broker.dead_letters(queue)]
        assert all(s is not None and abs(s - time.time()) < 60 for s in stamps), stamps
        return
    times = SQLITE_TIMES if broker_kind == "sqlite" else HOSTILE_TIMES
    for at in times:
        await STORES[broker_kind](broker, queue, at)
    await broker.add_dead_letter(DeadLetter(queue=queue, reason="failed", body=b"ours"))

    letters = await broker.dead_letters(queue)
    assert len(letters) == len(times) + 1
    *hostile, ours = letters
    assert [letter.dead_lettered_at for letter in hostile] == [None] * len(times)
    assert [letter.age_s(time.time()) for letter in hostile] == [None] * len(times)
    assert ours.dead_lettered_at is not None and 0 < ours.dead_lettered_at <= MAX_LETTER_TIME
    # No age: neither age criterion takes them, so no `purge --older-than` removes them.
    for where in (LetterFilter(older_than_s=0), LetterFilter(newer_than_s=1e9)):
        assert await broker.dead_letters(queue, where=where) == [ours]
