"""Dead-letter tools on every broker: list, filter, get, replay, purge.

A real worker dead-letters a known set (two tasks failing, bodies that are
no message); each test then acts on it and checks what the broker holds:
the messages back in the queue and the letters left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from aioack import App, TaskContext
from aioack.brokers import Broker, DeadLetter, LetterFilter
from aioack.message import Message, decode
from aioack.testing import run_until_idle
from tests.support import wait_until

pytestmark = pytest.mark.contract

JUNK = [b"\xff\x00not json", b'{"v": 1, "task": 5}']


@dataclass
class Known:
    """What was dead-lettered, and a switch that makes the tasks succeed."""

    app: App
    queue: str
    sends: list[str]
    builds: list[str]
    fixed: bool = False
    ran: list[tuple[str, int, int]] = field(default_factory=list)


async def _known_set(broker: Broker, queue: str) -> Known:
    app = App(broker=broker)
    known = Known(app, queue, [], [])

    @app.task(queue=queue, name="mail.send", max_retries=0)
    async def send(ctx: TaskContext, n: int) -> None:
        if not known.fixed:
            raise ValueError(f"smtp down for {n}")
        known.ran.append(("mail.send", n, ctx.attempt))

    @app.task(queue=queue, name="report.build", max_retries=0)
    async def build(ctx: TaskContext, n: int) -> None:
        if not known.fixed:
            raise KeyError(n)
        known.ran.append(("report.build", n, ctx.attempt))

    known.sends = [(await send.delay(n)).id for n in range(3)]
    known.builds = [(await build.delay(n)).id for n in range(2)]
    for i, body in enumerate(JUNK):
        await broker.publish(queue, body, message_id=f"junk-{i}")
    await run_until_idle(app, [queue])
    return known


async def _ready(broker: Broker, queue: str, count: int) -> None:
    async def holds() -> bool:
        return (await broker.stats(queue)).ready == count

    await wait_until(holds, timeout=10, message=f"{count} messages ready in {queue}")


async def test_a_worker_dead_letters_the_known_set_and_list_shows_every_letter(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    known = await _known_set(broker, new_queue())
    letters = await broker.dead_letters(known.queue)
    assert len(letters) == 7 == (await broker.stats(known.queue)).dead
    assert len({letter.id for letter in letters}) == 7 and all(letter.id for letter in letters)
    by_task: dict[str | None, set[str]] = {}
    for letter in letters:
        by_task.setdefault(letter.task, set()).add(letter.reason)
    assert by_task == {"mail.send": {"failed"}, "report.build": {"failed"}, None: {"malformed"}}
    # Reading twice changes nothing, not even the order.
    assert [letter.id for letter in await broker.dead_letters(known.queue)] == [
        letter.id for letter in letters
    ]


async def test_filters_pick_by_task_reason_id_and_age(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    known = await _known_set(broker, new_queue())
    queue = known.queue

    async def ids(where: LetterFilter, limit: int = 100) -> list[str | None]:
        return [
            letter.message_id for letter in await broker.dead_letters(queue, limit, where=where)
        ]

    assert sorted(await ids(LetterFilter(tasks=["mail.send"]))) == sorted(known.sends)
    assert len(await ids(LetterFilter(reasons=["malformed"]))) == 2
    assert await ids(LetterFilter(reasons=["timeout"])) == []
    assert len(await ids(LetterFilter(tasks=["report.build"]), limit=1)) == 1
    assert len(await ids(LetterFilter(newer_than_s=3600))) == 7
    assert await ids(LetterFilter(older_than_s=3600)) == []
    old = Message(id="old", task="mail.send").encode()
    await broker.add_dead_letter(
        DeadLetter(
            queue=queue,
            reason="failed",
            body=old,
            message_id="old",
            dead_lettered_at=time.time() - 7200,
        )
    )
    assert await ids(LetterFilter(older_than_s=3600)) == ["old"]
    [one] = await broker.dead_letters(queue, 1, where=LetterFilter(tasks=["report.build"]))
    assert one.id is not None
    assert await ids(LetterFilter(ids=[one.id])) == [one.message_id]


async def test_get_finds_a_letter_by_id_and_returns_none_for_an_unknown_one(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    known = await _known_set(broker, new_queue())
    letters = await broker.dead_letters(known.queue)
    for letter in letters:
        assert letter.id is not None
        assert await broker.get_dead_letter(known.queue, letter.id) == letter
    assert await broker.get_dead_letter(known.queue, "no-such-id") is None
    assert (await broker.stats(known.queue)).dead == 7  # reading took nothing away


async def test_replay_by_task_puts_fresh_copies_back_and_a_worker_runs_them(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    known = await _known_set(broker, new_queue())
    queue = known.queue
    looked: list[tuple[int, int]] = []
    moved = await broker.replay_dead_letters(
        queue,
        LetterFilter(tasks=["mail.send"]),
        batch_size=2,
        on_batch=lambda seen, done: looked.append((seen, done)),
    )
    assert moved == 3
    assert looked[-1] == (7, 3)  # every letter looked at, three moved
    await _ready(broker, queue, 3)
    stats = await broker.stats(queue)
    assert stats.dead == 4
    left = await broker.dead_letters(queue)
    assert not any(letter.task == "mail.send" for letter in left)

    known.fixed = True
    await run_until_idle(known.app, [queue])
    # Each ran once, as a first attempt again; nothing else ran or was dead-lettered.
    assert sorted(known.ran) == [("mail.send", n, 1) for n in range(3)]
    stats = await broker.stats(queue)
    assert (stats.pending, stats.dead) == (0, 4)


async def test_replay_all_then_every_task_runs_and_only_junk_comes_back(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    known = await _known_set(broker, new_queue())
    assert await broker.replay_dead_letters(known.queue, LetterFilter()) == 7
    await _ready(broker, known.queue, 7)
    assert (await broker.stats(known.queue)).dead == 0
    known.fixed = True
    await run_until_idle(known.app, [known.queue])
    assert len(known.ran) == 5
    # Bodies that are no message went back byte for byte, and were dead-lettered again.
    again = await broker.dead_letters(known.queue)
    assert sorted(letter.body for letter in again) == sorted(JUNK)
    assert {letter.reason for letter in again} == {"malformed"}


async def test_replay_by_id_starts_attempts_and_deliveries_again(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    tired = Message(id="tired", task="mail.send", args=[1], attempt=5)
    await broker.add_dead_letter(
        DeadLetter(
            queue=queue,
            reason="max_retries",
            body=tired.encode(),
            attempt=5,
            delivery_count=9,
            message_id="tired",
        )
    )
    [letter] = await broker.dead_letters(queue)
    assert letter.id is not None
    assert await broker.replay_dead_letters(queue, LetterFilter(ids=[letter.id])) == 1
    consumer = await broker.consume([queue], prefetch=1)
    delivery = await consumer.get(5.0)
    assert delivery is not None
    assert (delivery.delivery_count, delivery.redelivered) == (1, False)
    again = decode(delivery.body)
    assert (again.id, again.attempt, again.args) == ("tired", 1, [1])
    await broker.ack(delivery)
    await consumer.close()
    assert (await broker.stats(queue)).dead == 0


async def test_replay_and_purge_respect_limit_and_dry_run(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    known = await _known_set(broker, new_queue())
    queue, every = known.queue, LetterFilter()
    assert await broker.replay_dead_letters(queue, every, dry_run=True) == 7
    assert await broker.purge_dead_letters(queue, every, dry_run=True) == 7
    assert (await broker.stats(queue)).dead == 7
    assert await broker.replay_dead_letters(queue, every, limit=2) == 2
    await _ready(broker, queue, 2)
    assert await broker.purge_dead_letters(queue, every, limit=3) == 3
    assert (await broker.stats(queue)).dead == 2


async def test_purge_by_reason_then_all_removes_letters_for_good(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    known = await _known_set(broker, new_queue())
    queue = known.queue
    assert await broker.purge_dead_letters(queue, LetterFilter(reasons=["malformed"])) == 2
    left = await broker.dead_letters(queue)
    assert len(left) == 5 and {letter.reason for letter in left} == {"failed"}
    assert await broker.purge_dead_letters(queue, LetterFilter(tasks=["report.build"])) == 2
    assert await broker.purge_dead_letters(queue, LetterFilter()) == 3
    stats = await broker.stats(queue)
    assert (stats.dead, stats.pending) == (0, 0)
    assert await broker.dead_letters(queue) == []


async def test_two_replays_at_once_move_each_letter_exactly_once(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    for n in range(40):
        body = Message(id=f"m{n}", task="t").encode()
        await broker.add_dead_letter(DeadLetter(queue=queue, reason="failed", body=body))
    moved = await asyncio.gather(
        broker.replay_dead_letters(queue, LetterFilter(), batch_size=5),
        broker.replay_dead_letters(queue, LetterFilter(), batch_size=5),
    )
    # A letter is held by one pass (RabbitMQ) or moved by a fenced step: never twice.
    assert sum(moved) == 40
    await _ready(broker, queue, 40)
    assert (await broker.stats(queue)).dead == 0


async def test_an_unknown_queue_is_unknown_and_has_no_letters(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, never = new_queue(), new_queue()
    await broker.declare([queue])
    await broker.add_dead_letter(DeadLetter(queue=queue, reason="failed", body=b"{}"))
    assert await broker.has_queue(queue)
    assert not await broker.has_queue(never)
    assert await broker.dead_letters(never) == []
    assert await broker.replay_dead_letters(never, LetterFilter()) == 0
    assert await broker.purge_dead_letters(never, LetterFilter()) == 0
