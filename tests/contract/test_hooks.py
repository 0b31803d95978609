"""Hooks on every broker: each event is seen, a raising hook changes nothing.

And nothing a worker started is alive once ``run()`` has returned, whether
it stopped normally, was forced, or a loop crashed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import aioack
from aioack import App, ConfigurationError, Retry
from aioack.brokers import Broker
from aioack.hooks import (
    DeliveryEvent,
    FinishedEvent,
    Hook,
    PublishEvent,
    SettledEvent,
    WorkerEvent,
)
from aioack.results import ResultBackend
from aioack.testing import run_until_idle
from tests.support import wait_until

pytestmark = pytest.mark.contract

FAST_RETRY = {"retry_backoff": 0.01, "retry_backoff_max": 0.05}


class Recorder(Hook):
    """Counts every event, and passes a trace id from publish to start."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.finished: list[FinishedEvent] = []
        self.settled: list[SettledEvent] = []
        self.started_headers: list[dict[str, str]] = []

    def on_publish(self, event: PublishEvent) -> None:
        self.seen["publish"] += 1
        event.headers["trace"] = f"t-{event.task_id}"

    def on_received(self, event: DeliveryEvent) -> None:
        self.seen["received"] += 1

    def on_started(self, event: DeliveryEvent) -> None:
        self.seen["started"] += 1
        self.started_headers.append(dict(event.headers))

    def on_finished(self, event: FinishedEvent) -> None:
        self.finished.append(event)

    def on_settled(self, event: SettledEvent) -> None:
        self.settled.append(event)

    def on_retry(self, event: SettledEvent) -> None:
        self.seen["retry"] += 1

    def on_dead_letter(self, event: SettledEvent) -> None:
        self.seen["dead_letter"] += 1

    def on_worker_started(self, event: WorkerEvent) -> None:
        self.seen["worker_started"] += 1

    def on_worker_stopping(self, event: WorkerEvent) -> None:
        self.seen["worker_stopping"] += 1


async def test_a_hook_sees_every_event_of_a_run_and_its_headers_travel(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, recorder = new_queue(), Recorder()
    app = App(broker=broker, hooks=[recorder])

    @app.task(queue=queue, max_retries=1, **FAST_RETRY)
    async def flaky(n: int) -> int:
        if n == 2:
            raise Retry()
        if n == 3:
            raise ValueError("boom")
        return n

    for n in (1, 2, 3):
        await flaky.delay(n)
    await broker.publish(queue, b"not json", message_id="bad")
    await run_until_idle(app, [queue])
    # Three publishes by the producer; a retry is a copy made by the broker (headers kept).
    assert recorder.seen["publish"] == 3
    assert recorder.seen["received"] == 5  # 1, 2 (two attempts), 3, and the garbage
    assert recorder.seen["started"] == 4
    assert recorder.seen["retry"] == 1 and recorder.seen["dead_letter"] == 3
    assert (recorder.seen["worker_started"], recorder.seen["worker_stopping"]) == (1, 1)
    assert all(h.get("trace", "").startswith("t-") for h in recorder.started_headers)
    outcomes = Counter(e.outcome for e in recorder.finished)
    assert outcomes == {"succeeded": 1, "retry_requested": 2, "failed": 1}
    actions = Counter(e.action for e in recorder.settled)
    assert actions == {"ack": 1, "retry": 1, "dead_letter": 3}
    assert all(e.duration_s >= 0 for e in recorder.settled)


class Raising(Hook):
    def __init__(self) -> None:
        self.calls = 0

    def on_finished(self, event: FinishedEvent) -> None:
        self.calls += 1
        raise RuntimeError("a broken hook")

    def on_settled(self, event: SettledEvent) -> None:
        raise KeyError("another broken hook")


async def test_a_raising_hook_never_keeps_a_delivery_unsettled_nor_a_renewer_alive(
    broker: Broker,
    results: ResultBackend,
    new_queue: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The bug this replaces: an on_failure that raised, with a failing idempotent
    # task, left the delivery unacked and the key's renewer running for good.
    queue, hook = new_queue(), Raising()
    app = App(broker=broker, results=results, idempotency_lease=0.3, hooks=[hook])

    @app.task(queue=queue, idempotent=True, max_retries=0)
    async def fails() -> None:
        raise ValueError("boom")

    before = _tasks()
    results_seen = [await fails.delay() for _ in range(3)]
    await run_until_idle(app, [queue])
    assert hook.calls == 3
    assert sorted(d.reason for d in await broker.dead_letters(queue)) == ["failed"] * 3
    assert (await broker.stats(queue)).pending == 0
    assert _tasks() - before == set(), "something the worker started is still running"
    # Logged once per hook, method and error type, not once per task.
    logged = [r for r in caplog.records if "a broken hook" in r.getMessage()]
    assert len(logged) == 1
    # The keys were released: a new publish of the same id runs again.
    assert await results.claim(results_seen[0].id, "someone", "x", 5.0) is not None


def test_a_hook_with_a_misspelt_event_or_no_event_is_refused() -> None:
    class Typo:
        def on_finish(self, event: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="did you mean 'on_finished'"):
        App(hooks=[Typo()])
    with pytest.raises(ConfigurationError, match="observes no event"):
        App().add_hook(Hook())


AIOACK = str(Path(aioack.__file__).parent)


def _tasks() -> set[asyncio.Task[Any]]:
    """Tasks running aioack's own code (a client library's, like aiormq's channel
    readers, belong to the broker connection, which outlives the worker)."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and _code_file(t).startswith(AIOACK)
    }


def _code_file(task: asyncio.Task[Any]) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return code.co_filename if code is not None else ""


@pytest.mark.parametrize("how", ["normal", "forced"])
async def test_nothing_the_worker_started_outlives_run(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str], how: str
) -> None:
    queue = new_queue()
    app = App(broker=broker, results=results, idempotency_lease=0.3)
    started = asyncio.Event()

    @app.task(queue=queue, idempotent=True)
    async def long(n: int) -> None:  # holds a claim, so a renewer runs beside it
        started.set()
        await asyncio.sleep(30)

    for n in range(3):
        await long.delay(n)
    before = _tasks()
    worker = app.worker([queue], concurrency=2, shutdown_timeout=0.2)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    await wait_until(lambda: len(_tasks() - before) > 3, message="loops, runs and renewers")
    worker.stop()
    if how == "forced":
        worker.stop()
    await asyncio.wait_for(run, 15)
    assert _tasks() - before == set()
    assert worker.forced is (how == "forced")
    await wait_until(lambda: _ready_again(broker, queue, 3), 5, message="all 3 back, unacked")


async def _ready_again(broker: Broker, queue: str, n: int) -> bool:
    return (await broker.stats(queue)).ready == n
