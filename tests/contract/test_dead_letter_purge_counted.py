"""A purge of counted letters, on every broker: it removes the letters someone agreed
to, by id, and none dead-lettered since.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from aioack.brokers import Broker, DeadLetter, LetterFilter
from aioack.brokers.deadletters import MAX_VALUES
from tests.contract.dead_letters import add_letters, dead, queued

pytestmark = pytest.mark.contract


async def test_a_purge_of_counted_ids_leaves_letters_dead_lettered_since(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    await broker.declare([queue])
    await add_letters(broker, queue, ["a", "b"])
    counted = await broker.dead_letter_ids(queue, LetterFilter())
    assert len(counted) == 2
    # While the operator reads the question: someone replays a, a task fails as c.
    [a] = [letter for letter in await broker.dead_letters(queue) if letter.message_id == "a"]
    assert a.id is not None
    assert await broker.replay_dead_letters(queue, LetterFilter(ids=[a.id])) == 1
    await add_letters(broker, queue, ["c"])

    removed = await broker.purge_dead_letters(
        queue, LetterFilter(), limit=len(counted), only=frozenset(counted)
    )
    assert removed == 1  # b: a was gone, c was never counted
    assert await dead(broker, queue) == ["c"]
    assert await queued(broker, queue) == ["a"]


async def test_counted_ids_may_be_more_than_a_selection_takes(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    # LetterFilter(ids=...) bounds what a user types; the ids a purge counted are not.
    queue, many = new_queue(), MAX_VALUES + 200
    await broker.declare([queue])
    for start in range(0, many, 100):
        await asyncio.gather(
            *(
                broker.add_dead_letter(DeadLetter(queue=queue, reason="failed", body=b"%d" % n))
                for n in range(start, min(start + 100, many))
            )
        )
    counted = await broker.dead_letter_ids(queue, LetterFilter(), batch_size=500)
    assert len(set(counted)) == many
    await add_letters(broker, queue, ["late"])
    assert await broker.purge_dead_letters(queue, LetterFilter(), only=frozenset(counted)) == many
    assert await dead(broker, queue) == ["late"]
