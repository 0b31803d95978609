"""Revoke and abort on every broker (docs/task-control.md#revoke-and-abort).

What is counted is what the guarantee is about: starts of the task body, and
what the broker still holds afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import pytest

from aioack import App, State
from aioack.brokers import Broker
from aioack.errors import ConfigurationError, TaskRevoked
from aioack.results import ResultBackend
from aioack.testing import run_until_idle
from tests.support import wait_until

pytestmark = pytest.mark.contract


async def _assert_drained(broker: Broker, queue: str) -> None:
    stats = await broker.stats(queue)
    assert stats.pending == 0, f"queue {queue} still holds {stats}"
    assert await broker.dead_letters(queue) == []


async def test_a_revoked_queued_task_is_acked_without_running(
    broker: Broker,
    results: ResultBackend,
    new_queue: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, app, starts = new_queue(), App(broker=broker, results=results), []

    @app.task(queue=queue)
    async def work(n: int) -> int:
        starts.append(n)
        return n

    kept = await work.delay(1)
    revoked = await work.delay(2)
    await revoked.revoke()
    await app.revoke("no-such-task-id")  # unknown: accepted, harmless
    with caplog.at_level(logging.INFO, logger="aioack.worker"):
        assert await run_until_idle(app, [queue]) == []  # a worker started after the revoke
    assert starts == [1]
    settled = [r for r in caplog.records if getattr(r, "reason", None) == "revoked"]
    assert len(settled) == 1, [r.getMessage() for r in settled]
    assert f"[{revoked.id}] attempt 1 acked (revoked)" in settled[0].getMessage()
    assert await kept.get(timeout=5) == 1
    assert await revoked.state() is State.REVOKED
    with pytest.raises(TaskRevoked):
        await revoked.get(timeout=5)
    await _assert_drained(broker, queue)


async def test_a_revoked_delayed_task_is_not_run_when_it_comes_due(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    queue, app, starts = new_queue(), App(broker=broker, results=results), []

    @app.task(queue=queue)
    async def later(n: int) -> int:
        starts.append(n)
        return n

    async with app.worker([queue]):
        revoked = await later.apply_async((1,), countdown=0.5)
        kept = await later.apply_async((2,), countdown=0.5)
        await app.revoke(revoked.id)  # the running worker hears it
        assert await kept.get(timeout=10) == 2
        with pytest.raises(TaskRevoked):
            await revoked.get(timeout=10)
    assert starts == [2]
    await _assert_drained(broker, queue)


async def test_terminate_cancels_a_running_task_and_it_is_not_retried(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker, results=results)
    started, starts, cancelled = asyncio.Event(), [], []

    @app.task(queue=queue, autoretry_for=(Exception,), max_retries=5)
    async def slow() -> str:
        starts.append(1)
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise
        return "finished"

    result = await slow.delay()
    async with app.worker([queue]):
        await asyncio.wait_for(started.wait(), 10)
        await result.revoke(terminate=True)
        with pytest.raises(TaskRevoked):
            await result.get(timeout=10)
    assert (starts, cancelled) == ([1], [1])
    await _assert_drained(broker, queue)


async def test_without_terminate_a_running_task_finishes(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker, results=results)
    started, go_on = asyncio.Event(), asyncio.Event()

    @app.task(queue=queue)
    async def job() -> str:
        started.set()
        await go_on.wait()
        return "done"

    result = await job.delay()
    async with app.worker([queue]):
        await asyncio.wait_for(started.wait(), 10)
        await result.revoke()
        await asyncio.sleep(0.2)  # time for the worker to hear it (it must do nothing)
        go_on.set()
        assert await result.get(timeout=10) == "done"
    await _assert_drained(broker, queue)


async def test_terminate_on_a_thread_task_never_stores_its_result_as_success(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    queue, app = new_queue(), App(broker=broker, results=results)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    @app.task(queue=queue)
    def blocking() -> int:  # a plain def: runs in a thread, cannot be stopped
        started.set()
        release.wait(10)
        finished.set()
        return 7

    result = await blocking.delay()
    async with app.worker([queue]):
        await wait_until(started.is_set, timeout=10, message="the thread started")
        await result.revoke(terminate=True)
        with pytest.raises(TaskRevoked):
            await result.get(timeout=10)
        release.set()
        await wait_until(finished.is_set, timeout=10, message="the thread finished")
        await asyncio.sleep(0.2)  # a late store would land now
        assert await result.state() is State.REVOKED
    await _assert_drained(broker, queue)


async def test_revoke_checks_its_arguments_and_needs_a_result_backend(
    broker: Broker, results: ResultBackend
) -> None:
    app = App(broker=broker, results=results)
    for bad in ("", "a\nb", "x" * 201):
        with pytest.raises(ValueError, match="not a task id"):
            await app.revoke(bad)
    with pytest.raises(ValueError, match="no task id"):
        await app.revoke([])
    for expires in (0, -1, float("nan"), 8 * 86_400, True):
        with pytest.raises(ValueError, match="expires"):
            await app.revoke("t", expires=expires)
    with pytest.raises(ConfigurationError, match="results"):
        await App(broker=broker).revoke("t")
    with pytest.raises(ConfigurationError, match="revoke_expires"):
        App(broker=broker, revoke_expires=0)
