"""What a publisher can put beside a body (AMQP headers, Redis stream fields) is hostile.

Each broker reads some metadata from the wire: delivery counts carried by
republished copies, a redelivered flag, the broker's own count. Every value
a publisher could set is tried here against a real worker: it must never
crash the worker, switch off ``delivery_limit``, have a message dead-lettered
that should run, or forge a log line. A case either runs the task or
dead-letters the message ``malformed`` with the reason, and the worker goes
on to the next message.

A broker joins this suite with one entry in INJECTORS and its CASES (the
memory broker carries no metadata beside the body).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from aioack import App
from aioack.brokers import Broker
from aioack.message import Message
from aioack.testing import run_until_idle
from tests.conftest import make_broker
from tests.support import unique

pytestmark = pytest.mark.contract

MALFORMED, RUNS = "malformed", "runs"


@dataclass(frozen=True)
class Case:
    name: str
    metadata: dict[str, Any]
    #: MALFORMED (dead-lettered before running) or RUNS.
    expect: str


async def _amqp_inject(broker: Broker, queue: str, body: bytes, headers: dict[str, Any]) -> None:
    # The broker's own publish path, with headers as a hostile publisher sets them.
    await broker._publish(queue, body, "hostile", headers, 0.0)  # type: ignore[attr-defined]


async def _redis_inject(broker: Broker, queue: str, body: bytes, fields: dict[str, Any]) -> None:
    stream = broker._io.keys(queue).stream  # type: ignore[attr-defined]
    await broker._io.client.xadd(stream, {"body": body, **fields})  # type: ignore[attr-defined]


async def _sqlite_inject(broker: Broker, queue: str, body: bytes, columns: dict[str, Any]) -> None:
    # Any process with the file open can write a row: its values are wire input too.
    values = {"queue": queue, "message_id": "hostile", "body": body, "ready_at": 0.0, **columns}
    names = ", ".join(values)
    marks = ", ".join("?" * len(values))

    def insert(conn: Any) -> None:
        conn.execute(f"INSERT INTO messages ({names}) VALUES ({marks})", tuple(values.values()))

    await broker._running().run(insert)  # type: ignore[attr-defined]


Injector = Callable[[Broker, str, bytes, dict[str, Any]], Awaitable[None]]
INJECTORS: dict[str, Injector] = {
    "rabbitmq": _amqp_inject,
    "redis": _redis_inject,
    "sqlite": _sqlite_inject,
}

CASES: dict[str, list[Case]] = {
    "rabbitmq": [
        # 2^63 - 1 is a valid AMQP long: the count once overflowed the dead letter's header.
        Case("deliveries-max-long", {"x-aioack-deliveries": 2**63 - 1}, MALFORMED),
        Case("deliveries-negative", {"x-aioack-deliveries": -1}, MALFORMED),
        Case("deliveries-huge-float", {"x-aioack-deliveries": 3e38}, MALFORMED),
        Case("deliveries-text", {"x-aioack-deliveries": "7\nforged"}, MALFORMED),
        Case("deliveries-bool", {"x-aioack-deliveries": True}, MALFORMED),
        Case("redelivered-text", {"x-aioack-redelivered": "yes"}, MALFORMED),
        # The broker's header, set by a publisher: read only on a redelivery.
        Case("delivery-count-forged", {"x-delivery-count": 50}, RUNS),
        Case("delivery-count-negative", {"x-delivery-count": -3}, RUNS),
        Case("delivery-count-text", {"x-delivery-count": "abc"}, RUNS),
    ],
    "redis": [
        Case("dc-huge", {"dc": b"99999999999999999999"}, MALFORMED),
        Case("dc-negative", {"dc": b"-1"}, MALFORMED),
        Case("dc-text", {"dc": b"7\nforged"}, MALFORMED),
        Case("dc-empty", {"dc": b""}, MALFORMED),
        Case("extra-field", {"x": b"1"}, MALFORMED),
    ],
    "sqlite": [
        # deliveries is counted before the claim adds one.
        Case("deliveries-huge", {"deliveries": 2**62}, MALFORMED),
        Case("deliveries-negative", {"deliveries": -5}, MALFORMED),
        # (a numeric text would be coerced to an integer by the column's affinity)
        Case("deliveries-float", {"deliveries": 1e300}, MALFORMED),
        Case("redelivered-text", {"redelivered": "yes"}, MALFORMED),
        Case("body-as-text", {"body": "not bytes\nforged"}, MALFORMED),
    ],
}

PARAMS = [(kind, case) for kind, cases in CASES.items() for case in cases]


@pytest.mark.parametrize(
    ("kind", "case"), PARAMS, ids=[f"{kind}-{case.name}" for kind, case in PARAMS]
)
async def test_hostile_metadata_never_crashes_the_worker_nor_switches_off_a_limit(
    kind: str, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker(kind)
    queue = unique("hostile")
    app, runs = App(broker=broker), []

    @app.task(queue=queue, delivery_limit=3)
    async def record(n: int) -> None:
        runs.append(n)

    try:
        await app.connect()
        await broker.declare([queue])
        message = Message(id=unique("m"), task=record.name, args=[1])
        await INJECTORS[kind](broker, queue, message.encode(), case.metadata)
        await record.delay(2)  # the worker goes on to the next message
        with caplog.at_level(logging.INFO, logger="aioack"):
            assert await run_until_idle(app, [queue]) == []
        letters = await broker.dead_letters(queue)
        if case.expect == RUNS:
            assert sorted(runs) == [1, 2]
            assert letters == []
        else:
            assert runs == [2]
            [letter] = letters
            assert letter.reason == "malformed", letter
            assert letter.body == message.encode() or kind in ("redis", "sqlite")
        assert (await broker.stats(queue)).pending == 0
        # No log line was forged: wire text never reaches a log with a raw newline.
        assert not any("\nforged" in r.getMessage() for r in caplog.records)
    finally:
        await broker.delete([queue])
        await app.aclose()
