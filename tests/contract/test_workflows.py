"""Workflows (chain, group, chord) on every broker, with its result backend beside it.

What is counted is what ran: task bodies started (taken inside the task) and
what the broker holds (dead letters), never what a workflow call said.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from aioack import App, BrokerUnavailable, TaskFailed, chain, chord, group
from aioack.brokers import Broker
from aioack.message import Message
from aioack.results import ResultBackend, ResultRecord, State
from aioack.testing import run_until_idle

pytestmark = pytest.mark.contract

#: Seconds any result may take: generous, the machine is shared.
WAIT_S = 60.0


def _app(broker: Broker, results: ResultBackend) -> App:
    # A short lease: a copy of the chord callback held back because its key is
    # busy returns soon.
    return App(broker=broker, results=results, idempotency_lease=1.0)


async def test_a_chain_passes_each_result_to_the_next_step(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    app, queue = _app(broker, results), new_queue()
    calls: list[tuple[str, Any]] = []

    @app.task(queue=queue)
    async def add(x: int, y: int) -> int:
        calls.append(("add", (x, y)))
        return x + y

    @app.task(queue=queue)
    async def mul(x: int, y: int) -> int:
        calls.append(("mul", (x, y)))
        return x * y

    @app.task(queue=queue)
    async def show(prefix: str) -> str:  # immutable: no previous result
        calls.append(("show", prefix))
        return f"{prefix}!"

    result = await chain(add.s(1, 2), mul.s(10), add.s(5)).apply_async(workflow_id="wf1")
    immutable = await chain(add.s(1, 1), show.si("end")).apply_async()
    await run_until_idle(app, [queue])

    assert await result.get(WAIT_S) == 35
    assert result.id == "wf1-2"  # the last step's deterministic id is the chain's result
    assert await immutable.get(WAIT_S) == "end!"
    assert calls.count(("add", (1, 2))) == 1
    assert ("mul", (3, 10)) in calls and ("add", (30, 5)) in calls
    assert ("show", "end") in calls


async def test_a_failed_step_stops_the_chain_and_get_raises_its_error(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    app, queue = _app(broker, results), new_queue()
    starts: Counter[str] = Counter()

    @app.task(queue=queue)
    async def first(x: int) -> int:
        starts["first"] += 1
        return x + 1

    @app.task(queue=queue)
    async def broken(x: int) -> int:
        starts["broken"] += 1
        raise RuntimeError(f"no stock for item {x}")

    @app.task(queue=queue)
    async def last(x: int) -> int:
        starts["last"] += 1
        return x

    result = await chain(first.s(1), broken.s(), last.s()).apply_async()
    await run_until_idle(app, [queue])

    with pytest.raises(TaskFailed) as failure:
        await result.get(WAIT_S)
    assert "no stock for item 2" in str(failure.value)
    assert "chain step 1 of 3" in str(failure.value)
    assert failure.value.exc_type == "RuntimeError"
    assert failure.value.traceback is not None and "no stock" in failure.value.traceback
    assert starts == Counter(first=1, broken=1)  # the last step never started


async def test_a_next_step_whose_arguments_cannot_fit_fails_the_chain(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    # The call site cannot know what add returns at run time: the worker that
    # publishes the next step checks it, and the chain fails with why.
    app, queue = _app(broker, results), new_queue()
    starts: Counter[str] = Counter()

    @app.task(queue=queue)
    async def count(text: str) -> Any:
        return len(text)  # an int, where shout takes a str

    @app.task(queue=queue)
    async def shout(text: str) -> str:
        starts["shout"] += 1
        return text.upper()

    result = await chain(count.s("abc"), shout.s()).apply_async()
    await run_until_idle(app, [queue])

    with pytest.raises(TaskFailed) as failure:
        await result.get(WAIT_S)
    assert "chain step 1 (" in str(failure.value) and "'text'" in str(failure.value)
    assert starts["shout"] == 0


async def test_a_group_result_is_the_list_of_its_members_results(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    app, queue = _app(broker, results), new_queue()

    @app.task(queue=queue)
    async def square(x: int) -> int:
        return x * x

    handle = await group(square.s(i) for i in range(10)).apply_async()
    await run_until_idle(app, [queue])
    assert await handle.get(WAIT_S) == [i * i for i in range(10)]


async def test_a_chord_of_100_fires_its_callback_once_even_with_duplicate_members(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    app, queue = _app(broker, results), new_queue()
    member_starts: Counter[int] = Counter()
    callback_starts: list[list[int]] = []

    @app.task(queue=queue)
    async def member(i: int) -> int:
        member_starts[i] += 1
        await asyncio.sleep(0.001 * (i % 7))  # finish out of order
        return i

    @app.task(queue=queue)
    async def collect(values: list[int]) -> int:
        callback_starts.append(values)
        return sum(values)

    # Every member's message is published twice (a producer retrying after a
    # lost confirm): each copy runs, and must count once.
    publish = app.publish

    async def publish_twice(message: Message, queue: str, *, delay_s: float = 0.0) -> None:
        await publish(message, queue, delay_s=delay_s)
        await publish(message, queue, delay_s=delay_s)

    app.publish = publish_twice  # type: ignore[method-assign]
    result = await chord([member.s(i) for i in range(100)], collect.s()).apply_async()
    app.publish = publish  # type: ignore[method-assign]
    await asyncio.gather(
        run_until_idle(app, [queue], concurrency=20), run_until_idle(app, [queue], concurrency=20)
    )

    assert await result.get(WAIT_S) == sum(range(100))
    assert callback_starts == [list(range(100))]  # once, with the results in member order
    assert sum(member_starts.values()) == 200  # both copies of every member ran


async def test_a_dead_lettered_member_fails_the_chord_naming_it(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    app, queue = _app(broker, results), new_queue()
    callback_starts: list[object] = []

    @app.task(queue=queue)
    async def member(i: int) -> int:
        if i == 3:
            raise ValueError("member three is broken")
        return i

    @app.task(queue=queue)
    async def collect(values: list[int]) -> int:
        callback_starts.append(values)
        return sum(values)

    result = await chord([member.s(i) for i in range(5)], collect.s()).apply_async()
    await run_until_idle(app, [queue])

    with pytest.raises(TaskFailed) as failure:
        await result.get(WAIT_S)
    assert "chord member 3 of 5" in str(failure.value)
    assert "member three is broken" in str(failure.value)
    assert callback_starts == []
    assert [letter.reason for letter in await broker.dead_letters(queue, 10)] == ["failed"]


async def test_a_malformed_continuation_is_dead_lettered_malformed(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    app, queue = _app(broker, results), new_queue()
    starts: list[int] = []

    @app.task(name="wf.step", queue=queue)
    async def step(x: int) -> int:
        starts.append(x)
        return x

    good = Message(id="m1", task="wf.step", args=[1]).model_dump(mode="json")
    too_long = [{"task": "wf.step", "queue": queue}] * 500
    hostile = [
        {"v": 1, "workflow": "w", "rest": too_long},  # over the step bound
        {"v": 2, "workflow": "w"},  # a format version this worker does not know
        {"v": 1, "workflow": "w", "rest": [{"task": "x", "queue": "no spaces allowed"}]},
        {"v": 1, "workflow": "w", "chord": {"member": 5, "size": 2, "callback": too_long[0]}},
        {"v": 1, "workflow": "w\nforged log line"},
    ]
    await broker.declare([queue])
    for i, then in enumerate(hostile):
        # One "then" key: with two, which one a JSON parser keeps differs
        # between pydantic versions (the first in 2.7, the last in later ones).
        forged = _json({**good, "id": f"m{i}", "then": then})
        await broker.publish(queue, forged.encode(), message_id=f"m{i}")
    await run_until_idle(app, [queue])

    letters = await broker.dead_letters(queue, 10)
    assert sorted(letter.reason for letter in letters) == ["malformed"] * len(hostile)
    assert starts == []


def _json(value: object) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize("lost", ["before", "after"])
async def test_a_next_step_whose_publish_fails_is_published_again_under_the_same_id(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str], lost: str
) -> None:
    # The worker's publish of step 1 fails once: "before" the broker holds it
    # (an outage), or "after" (a lost confirm: it holds it, the worker cannot
    # know). Either way step 0 is not acked: it runs again and publishes step 1
    # again, under the same task id. A step marked idempotent then runs once.
    # (first is idempotent too: its key must not complete before step 1 is out,
    # or its redelivery would be acked unrun and the chain lost.)
    app, queue = _app(broker, results), new_queue()
    starts: Counter[str] = Counter()
    published: list[str] = []

    @app.task(queue=queue, idempotent=True)
    async def first(x: int) -> int:
        starts["first"] += 1
        return x + 1

    @app.task(queue=queue, idempotent=True)
    async def second(x: int) -> int:
        starts["second"] += 1
        return x * 10

    real_publish = broker.publish

    async def flaky_publish(queue: str, body: bytes, *, message_id: str, **options: Any) -> None:
        if message_id == "wf-lost-1":
            published.append(message_id)
            if len(published) == 1 and lost == "before":
                raise BrokerUnavailable("the broker went away before it held step 1")
            await real_publish(queue, body, message_id=message_id, **options)
            if len(published) == 1 and lost == "after":
                raise BrokerUnavailable("the confirm of step 1 was lost")
            return
        await real_publish(queue, body, message_id=message_id, **options)

    broker.publish = flaky_publish  # type: ignore[method-assign]
    result = await chain(first.s(1), second.s()).apply_async(workflow_id="wf-lost")
    await run_until_idle(app, [queue])
    broker.publish = real_publish  # type: ignore[method-assign]

    assert await result.get(WAIT_S) == 20
    assert published == ["wf-lost-1", "wf-lost-1"]  # one id, published twice
    assert starts == Counter(first=2, second=1)


async def test_a_step_reaching_a_worker_without_results_is_kept_as_a_dead_letter(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    producer, queue = _app(broker, results), new_queue()
    consumer = App(broker=broker)  # a worker started without --results
    starts: list[int] = []

    for app in (producer, consumer):

        @app.task(queue=queue, name="wf.step")
        async def step(x: int) -> int:
            starts.append(x)
            return x + 1

    await chain(producer.tasks["wf.step"].s(1), producer.tasks["wf.step"].s()).apply_async()
    await run_until_idle(consumer, [queue])
    assert starts == []  # never run: its next step would have been lost
    letters = await broker.dead_letters(queue)
    assert [letter.reason for letter in letters] == ["no_results"]


async def test_a_duplicate_of_a_step_that_fails_after_the_chain_finished_does_not_fail_it(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    # Step 0 ran, published step 1 and was killed before its ack: its delivery
    # comes back (here: its message published again) after the chain finished,
    # and this second run fails. The chain went on from the first run's
    # success, so its result must stay that success.
    app, queue = _app(broker, results), new_queue()
    starts: Counter[str] = Counter()

    @app.task(queue=queue)
    async def reserve(item: int) -> int:
        starts["reserve"] += 1
        if starts["reserve"] > 1:
            raise RuntimeError("already reserved")  # not idempotent: a second run fails
        return item

    @app.task(queue=queue)
    async def ship(reserved: int) -> str:
        starts["ship"] += 1
        return f"shipped {reserved}"

    sent: list[tuple[Message, str]] = []
    publish = app.publish

    async def keep(message: Message, queue: str, *, delay_s: float = 0.0) -> None:
        sent.append((message, queue))
        await publish(message, queue, delay_s=delay_s)

    app.publish = keep  # type: ignore[method-assign]
    result = await chain(reserve.s(7), ship.s()).apply_async()
    app.publish = publish  # type: ignore[method-assign]
    await run_until_idle(app, [queue])
    assert await result.get(WAIT_S) == "shipped 7"

    [(step0, step0_queue)] = sent
    await publish(step0, step0_queue)  # the redelivery of step 0
    await run_until_idle(app, [queue])

    assert starts["reserve"] == 2  # the duplicate ran, and failed
    assert [letter.reason for letter in await broker.dead_letters(queue, 10)] == ["failed"]
    assert await result.get(WAIT_S) == "shipped 7"  # the chain's result is still its success
    # The duplicate went on as the success it duplicates did: step 1 published again.
    assert starts["ship"] == 2


async def test_a_chord_slower_than_result_expires_fails_with_chord_member_lost(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    # Member 2 completes only once member 0's results have expired: the count
    # must still be there to fill, and report the lost result, not start anew.
    results.result_expires_s = 2.0
    app, queue = _app(broker, results), new_queue()
    callback_starts: list[object] = []
    workflow = f"slow-chord-{new_queue()}"

    async def until(done: Callable[[ResultRecord | None], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not done(await results.fetch(f"{workflow}-0")):
                await asyncio.sleep(0.05)

    @app.task(queue=queue)
    async def member(i: int) -> int:
        if i == 2:
            await until(lambda record: record is not None and record.state is State.SUCCESS)
            await until(lambda record: record is None)  # member 0's result expired
        return i

    @app.task(queue=queue)
    async def collect(values: list[int]) -> int:
        callback_starts.append(values)
        return sum(values)

    result = await chord([member.s(i) for i in range(3)], collect.s()).apply_async(
        workflow_id=workflow
    )
    await run_until_idle(app, [queue], concurrency=3)

    with pytest.raises(TaskFailed) as failure:
        await result.get(WAIT_S)
    assert failure.value.exc_type == "ChordMemberLost"
    assert "chord member 0 of 3" in str(failure.value)
    assert callback_starts == []
