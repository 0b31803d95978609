"""Results: states, waiting without polling, failures, typed values, store-before-ack.

Run on every result backend (memory, real Redis) with the MemoryBroker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from pydantic import BaseModel

from aioack import App, ConfigurationError, Retry, TaskContext
from aioack.brokers import MemoryBroker
from aioack.errors import BrokerUnavailable, JoinInsideTask, ResultTimeout, TaskFailed
from aioack.results import MemoryResultBackend, ResultBackend, ResultRecord, State
from aioack.testing import run_until_idle
from tests.results.conftest import BackendFactory
from tests.support import unique, wait_until

FAST_RETRY = {"retry_backoff": 0.01, "retry_backoff_max": 0.02}


class Receipt(BaseModel):
    order: str
    total_cents: int
    paid_at: dt.datetime


def make_app(backend: ResultBackend) -> tuple[App, str]:
    return App(broker=MemoryBroker(), results=backend), unique("q")


async def test_states_go_pending_started_success(backend: ResultBackend) -> None:
    app, queue = make_app(backend)
    seen_inside: list[State] = []

    @app.task(queue=queue)
    async def add(ctx: TaskContext, x: int, y: int) -> int:
        seen_inside.append(await app.result(ctx.id).state())
        return x + y

    result = await add.delay(2, 3)
    assert await result.state() is State.PENDING
    await run_until_idle(app, [queue], raise_errors=True)
    assert seen_inside == [State.STARTED]
    assert await result.state() is State.SUCCESS
    assert await result.get(timeout=1) == 5


async def test_track_started_false_skips_the_started_write(backend: ResultBackend) -> None:
    app, queue = make_app(backend)
    seen_inside: list[State] = []

    @app.task(queue=queue, track_started=False)
    async def add(ctx: TaskContext, x: int, y: int) -> int:
        seen_inside.append(await app.result(ctx.id).state())
        return x + y

    result = await add.delay(2, 3)
    await run_until_idle(app, [queue], raise_errors=True)
    assert seen_inside == [State.PENDING]
    assert await result.get(timeout=1) == 5


@pytest.mark.serial  # measures how soon get() wakes: nothing may run beside it
async def test_get_wakes_on_the_store_without_polling(
    backend: ResultBackend, results_kind: str
) -> None:
    fetches = 0
    real_fetch = backend.fetch

    async def counting_fetch(task_id: str) -> ResultRecord | None:
        nonlocal fetches
        fetches += 1
        return await real_fetch(task_id)

    backend.fetch = counting_fetch  # type: ignore[method-assign]
    app, _ = make_app(backend)
    waiter = asyncio.create_task(app.result("t-1").get(timeout=5))
    await asyncio.sleep(0.3)  # a poller would have fetched many times by now
    stored_at = time.monotonic()
    await backend.store(ResultRecord(task_id="t-1", state=State.SUCCESS, result=42))
    assert await waiter == 42
    assert time.monotonic() - stored_at < 0.2
    if results_kind == "sqlite":
        # SQLite cannot notify another process: it reads every poll_interval (0.05 s,
        # docs/sqlite.md), and a store made in this process wakes the waiter at once.
        assert fetches <= 0.3 / 0.05 + 3, f"get() fetched {fetches} times"
    else:
        assert fetches <= 2, f"get() fetched {fetches} times: it polls"


async def test_get_times_out_with_a_timeout_error(backend: ResultBackend) -> None:
    app, _ = make_app(backend)
    with pytest.raises(ResultTimeout) as caught:
        await app.result("never").get(timeout=0.1)
    assert isinstance(caught.value, TimeoutError)


async def test_result_expires_after_result_expires_seconds(make_backend: BackendFactory) -> None:
    backend = make_backend(result_expires=0.2)
    await backend.store(ResultRecord(task_id="gone", state=State.SUCCESS, result=1))
    assert await backend.fetch("gone") is not None

    async def expired() -> bool:
        return await backend.fetch("gone") is None

    await wait_until(expired, timeout=3, message="the record to expire")


async def test_failure_reraises_as_task_failed_with_type_message_traceback(
    backend: ResultBackend,
) -> None:
    app, queue = make_app(backend)

    @app.task(queue=queue, max_retries=0)
    async def explode(n: int) -> None:
        raise ValueError(f"bad n {n}")

    result = await explode.delay(7)
    await run_until_idle(app, [queue])
    with pytest.raises(TaskFailed) as caught:
        await result.get(timeout=1)
    failed = caught.value
    assert (failed.state, failed.exc_type, failed.exc_message) == (
        "FAILURE",
        "ValueError",
        "bad n 7",
    )
    assert failed.traceback and "explode" in failed.traceback
    assert await result.state() is State.FAILURE


async def test_refused_before_running_is_dead_lettered_for_the_caller(
    backend: ResultBackend,
) -> None:
    app, queue = make_app(backend)

    @app.task(queue=queue)
    async def stale() -> None: ...

    result = await stale.apply_async(expires=0.01)
    await asyncio.sleep(0.05)
    await run_until_idle(app, [queue])
    with pytest.raises(TaskFailed) as caught:
        await result.get(timeout=1)
    assert (caught.value.state, caught.value.exc_type) == ("DEAD_LETTERED", "expired")


async def test_retry_is_recorded_then_success(backend: ResultBackend) -> None:
    app, queue = make_app(backend)
    states: list[State] = []

    @app.task(queue=queue, **FAST_RETRY)
    async def flaky(ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            raise Retry()
        states.append(await app.result(ctx.id).state())
        return "ok"

    result = await flaky.delay()
    await run_until_idle(app, [queue])
    assert states == [State.STARTED]
    record = await result.record()
    assert record is not None and (record.state, record.attempt, record.result) == (
        "SUCCESS",
        2,
        "ok",
    )


async def test_pydantic_return_values_round_trip(backend: ResultBackend) -> None:
    app, queue = make_app(backend)
    paid_at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    @app.task(queue=queue)
    async def pay(order: str) -> Receipt:
        return Receipt(order=order, total_cents=1250, paid_at=paid_at)

    @app.task(queue=queue)
    def pairs() -> dict[str, tuple[int, dt.date]]:
        return {"a": (1, dt.date(2026, 5, 6))}

    first, second = await pay.delay("o-1"), await pairs.delay()
    await run_until_idle(app, [queue], raise_errors=True)
    receipt = await first.get(timeout=1)
    assert receipt == Receipt(order="o-1", total_cents=1250, paid_at=paid_at)
    assert await second.get(timeout=1) == {"a": (1, dt.date(2026, 5, 6))}
    raw = await first.record()
    assert raw is not None and raw.result["paid_at"] == "2026-01-02T03:04:05Z"


async def test_a_value_that_does_not_fit_the_annotation_fails_the_run(
    backend: ResultBackend,
) -> None:
    app, queue = make_app(backend)

    @app.task(queue=queue, max_retries=0)
    async def liar() -> int:
        return "not an int"  # type: ignore[return-value]

    result = await liar.delay()
    await run_until_idle(app, [queue])
    with pytest.raises(TaskFailed) as caught:
        await result.get(timeout=1)
    assert caught.value.state == "FAILURE"


async def test_get_inside_a_task_raises_unless_allow_join(backend: ResultBackend) -> None:
    app, queue = make_app(backend)
    outcomes: list[object] = []

    @app.task(queue=queue)
    async def child() -> int:
        return 1

    @app.task(queue=queue)
    async def parent(allow: bool) -> None:
        handle = await child.delay()
        try:
            outcomes.append(await handle.get(timeout=2, allow_join=allow))
        except JoinInsideTask as exc:
            outcomes.append(type(exc))

    await parent.delay(False)
    await run_until_idle(app, [queue])
    await parent.delay(True)
    await run_until_idle(app, [queue], concurrency=2)
    assert outcomes == [JoinInsideTask, 1]


async def test_get_without_a_result_backend_is_a_configuration_error() -> None:
    app = App(broker=MemoryBroker())

    @app.task
    async def noop() -> None: ...

    result = await noop.delay()
    with pytest.raises(ConfigurationError, match="results="):
        await result.get(timeout=0.1)


async def test_results_url_picks_the_backend() -> None:
    app = App(broker=MemoryBroker(), results="memory://", result_expires=60)
    assert isinstance(app.results, MemoryResultBackend)
    assert app.results.result_expires_s == 60
    with pytest.raises(ConfigurationError, match="unknown results URL scheme"):
        App(results="mongodb://x")


class FailingFinalStores(MemoryResultBackend):
    """Refuses to store the first ``failures`` final records, like a backend that is down."""

    def __init__(self, broker: MemoryBroker, queue: str, failures: int) -> None:
        super().__init__()
        self.broker, self.queue, self.failures = broker, queue, failures
        self.unacked_at_final_store: list[int] = []

    async def store(self, record: ResultRecord) -> None:
        if record.state.is_final:
            self.unacked_at_final_store.append((await self.broker.stats(self.queue)).unacked)
            if self.failures:
                self.failures -= 1
                raise BrokerUnavailable("result store down")
        await super().store(record)


async def test_result_is_stored_before_the_ack_and_a_failed_store_is_not_acked() -> None:
    broker, queue = MemoryBroker(), unique("q")
    backend = FailingFinalStores(broker, queue, failures=1)
    app = App(broker=broker, results=backend)
    runs: list[int] = []

    @app.task(queue=queue)
    async def charge(ctx: TaskContext) -> str:
        runs.append(ctx.delivery_count)
        return "charged"

    result = await charge.delay()
    await run_until_idle(app, [queue])
    # The first run's store failed: it was requeued (not acked) and ran again.
    assert runs == [1, 2]
    # Both times the delivery was still held (unacked) while the result was stored.
    assert backend.unacked_at_final_store == [1, 1]
    assert await result.get(timeout=1) == "charged"
    stats = await broker.stats(queue)
    assert stats.pending == 0
