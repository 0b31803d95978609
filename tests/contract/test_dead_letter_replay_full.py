"""A replay is new work, on every broker: a queue's ``max_length`` holds for each copy,
and a full queue stops the replay with nothing lost and nothing duplicated.

Every message id is drained out of the queue and read out of the dead-letter
store afterwards: each must be in exactly one of the two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from aioack import QueueLimit, ReplayStopped
from aioack.brokers import Broker, LetterFilter
from aioack.message import Message
from tests.contract.dead_letters import add_letters, dead, queued

pytestmark = pytest.mark.contract

#: Copies a broker may take past max_length before it refuses: RabbitMQ's quorum
#: queues check the limit after the enqueue (tests/contract/test_queue_limits.py).
OVERSHOOT = {"rabbitmq": 1}


# -- a replay is new work: a full queue stops it --------------------------------


@pytest.mark.parametrize("batch_size", [1, 5])
async def test_a_replay_into_a_full_queue_stops_and_neither_loses_nor_duplicates(
    broker: Broker, broker_kind: str, new_queue: Callable[[], str], batch_size: int
) -> None:
    queue = new_queue()
    broker.use_limits({queue: QueueLimit(max_length=3)})
    await broker.declare([queue])
    await broker.publish(queue, Message(id="queued", task="t").encode(), message_id="queued")
    letters = [f"l{n}" for n in range(5)]
    await add_letters(broker, queue, letters)

    with pytest.raises(ReplayStopped) as stopped:
        await broker.replay_dead_letters(queue, LetterFilter(), batch_size=batch_size)
    assert stopped.value.queue == queue and stopped.value.max_length == 3
    replayed = stopped.value.replayed
    assert 2 <= replayed <= 2 + OVERSHOOT.get(broker_kind, 0)
    stats = await broker.stats(queue)
    # The count reported is what moved: the queue holds those, the store the rest.
    assert (stats.ready, stats.dead) == (1 + replayed, 5 - replayed)

    in_queue, letters_left = await queued(broker, queue), await dead(broker, queue)
    # Each message exactly once, in the queue or as a dead letter: none lost,
    # none both (a replayed copy whose letter stayed would be run twice).
    assert Counter(in_queue + letters_left) == Counter(["queued", *letters])
    if broker_kind != "rabbitmq":  # copy by copy, oldest first
        assert in_queue == ["queued", "l0", "l1"] and letters_left == ["l2", "l3", "l4"]

    # Drained, a second replay finishes the job.
    assert await broker.replay_dead_letters(queue, LetterFilter()) == 5 - replayed
    assert sorted(await queued(broker, queue)) == sorted(letters_left)  # type: ignore[type-var]
    assert (await broker.stats(queue)).dead == 0


async def test_a_replay_into_a_queue_already_full_moves_nothing(
    broker: Broker, broker_kind: str, new_queue: Callable[[], str]
) -> None:
    # The reviewer's case: max_length=3, 3 queued, 5 letters replayed gave 8 ready.
    queue = new_queue()
    broker.use_limits({queue: QueueLimit(max_length=3)})
    await broker.declare([queue])
    for n in range(3):
        await broker.publish(queue, Message(id=f"q{n}", task="t").encode(), message_id=f"q{n}")
    await add_letters(broker, queue, [f"l{n}" for n in range(5)])
    with pytest.raises(ReplayStopped) as stopped:
        await broker.replay_dead_letters(queue, LetterFilter())
    extra = OVERSHOOT.get(broker_kind, 0)
    assert stopped.value.replayed <= extra
    stats = await broker.stats(queue)
    assert stats.ready <= 3 + extra
    assert stats.ready + stats.dead == 8


async def test_a_replay_without_a_limit_is_not_stopped(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, other = new_queue(), new_queue()
    broker.use_limits({other: QueueLimit(max_length=1)})  # another queue's limit
    await broker.declare([queue])
    await add_letters(broker, queue, [f"l{n}" for n in range(5)])
    assert await broker.replay_dead_letters(queue, LetterFilter(), batch_size=2) == 5
    assert (await broker.stats(queue)).ready == 5
