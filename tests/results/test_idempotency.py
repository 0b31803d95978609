"""Effect-once tasks: a key completed once is never run again, on every result backend."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from aioack import App, ConfigurationError, Retry, TaskContext
from aioack.brokers import Consumer, MemoryBroker
from aioack.results import (
    Claim,
    ClaimStatus,
    MemoryResultBackend,
    ResultBackend,
    ResultRecord,
    State,
)
from aioack.testing import run_until_idle
from tests.support import unique, wait_until


def make_app(backend: ResultBackend, lease_s: float = 30.0) -> tuple[App, str]:
    return App(broker=MemoryBroker(), results=backend, idempotency_lease=lease_s), unique("q")


async def test_duplicate_publish_with_the_same_task_id_runs_once(backend: ResultBackend) -> None:
    app, queue = make_app(backend)
    runs: list[str] = []

    @app.task(queue=queue, idempotent=True)
    async def send_invoice(order: str) -> str:
        runs.append(order)
        return f"invoice-{order}"

    first = await send_invoice.apply_async(("o-1",), task_id="order-o-1")
    await run_until_idle(app, [queue], raise_errors=True)
    again = await send_invoice.apply_async(("o-1",), task_id="order-o-1")
    await run_until_idle(app, [queue], raise_errors=True)
    assert runs == ["o-1"]
    assert await first.get(timeout=1) == await again.get(timeout=1) == "invoice-o-1"
    assert (await app.broker.stats(queue)).pending == 0


async def test_same_key_other_task_id_runs_once_and_the_duplicate_gets_the_result(
    backend: ResultBackend,
) -> None:
    app, queue = make_app(backend)
    runs: list[int] = []

    @app.task(queue=queue)
    async def charge(cents: int) -> int:
        runs.append(cents)
        return cents

    key = unique("pay")
    first = await charge.apply_async((100,), idempotency_key=key)
    second = await charge.apply_async((999,), idempotency_key=key)
    await run_until_idle(app, [queue], concurrency=1, raise_errors=True)
    assert runs == [100]
    assert await first.get(timeout=1) == 100
    assert await second.get(timeout=1) == 100, "the duplicate's caller gets the stored result"


async def test_a_key_held_by_a_live_run_sends_the_delivery_back_without_running(
    backend: ResultBackend,
) -> None:
    app, queue = make_app(backend, lease_s=0.4)
    runs: list[str] = []

    @app.task(queue=queue)
    async def ship(item: str) -> str:
        runs.append(item)
        return item

    key = unique("ship")
    claim = await backend.claim(key, "live-owner", "live-run", 5.0)
    assert claim.status is ClaimStatus.CLAIMED
    result = await ship.apply_async(("box",), idempotency_key=key)
    async with app.worker([queue], concurrency=1):
        await wait_until(
            lambda: _delayed(app, queue), timeout=3, message="the delivery to be sent back"
        )
        assert runs == []
        # The live run finishes: the held delivery, when it comes back, is acked unrun.
        done = ResultRecord(task_id="live-run", state=State.SUCCESS, result="from-live-run")
        await backend.complete(key, "live-owner", done)
        assert await result.get(timeout=3) == "from-live-run"
    assert runs == []


async def _delayed(app: App, queue: str) -> bool:
    return (await app.broker.stats(queue)).delayed > 0


async def test_a_key_held_by_a_dead_run_is_taken_over_after_its_lease(
    backend: ResultBackend,
) -> None:
    app, queue = make_app(backend, lease_s=0.3)
    runs: list[str] = []

    @app.task(queue=queue, idempotent=True)
    async def ship(item: str) -> str:
        runs.append(item)
        return item

    result = await ship.apply_async(("box",), task_id=unique("ship"))
    await backend.claim(result.id, "dead-worker", result.id, 0.3)  # never renewed
    async with app.worker([queue], concurrency=1):
        assert await result.get(timeout=5) == "box"
    assert runs == ["box"]


async def test_a_failed_attempt_releases_the_key_so_the_retry_runs(
    backend: ResultBackend,
) -> None:
    app, queue = make_app(backend)
    attempts: list[int] = []

    @app.task(queue=queue, idempotent=True, retry_backoff=0.01, retry_backoff_max=0.02)
    async def flaky(ctx: TaskContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise Retry()
        return ctx.attempt

    result = await flaky.delay()
    await run_until_idle(app, [queue])
    assert attempts == [1, 2]
    assert await result.get(timeout=1) == 2


async def test_the_claim_is_renewed_while_a_long_run_goes_on(backend: ResultBackend) -> None:
    app, queue = make_app(backend, lease_s=0.3)
    started, release = asyncio.Event(), asyncio.Event()
    runs = 0

    @app.task(queue=queue, idempotent=True)
    async def long_job() -> None:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()

    result = await long_job.delay()
    async with app.worker([queue], concurrency=2):
        await started.wait()
        await asyncio.sleep(0.45)  # past one lease: only renewal keeps the key
        claim = await backend.claim(result.id, "intruder", "x", 0.3)
        assert claim.status is ClaimStatus.BUSY
        release.set()
        await result.get(timeout=2)
    assert runs == 1


async def test_idempotent_tasks_without_a_result_backend_refuse_to_start() -> None:
    app = App(broker=MemoryBroker())

    @app.task(idempotent=True)
    async def once() -> None: ...

    with pytest.raises(ConfigurationError, match="result backend"):
        await app.worker().run(burst=True)
    with pytest.raises(ConfigurationError, match="result backend"):
        await once.apply_async(idempotency_key="k")


async def test_a_run_whose_key_another_run_completed_is_cancelled_and_not_rerun(
    backend: ResultBackend,
) -> None:
    app, queue = make_app(backend, lease_s=0.3)
    started = asyncio.Event()
    ends: list[str] = []

    @app.task(queue=queue, idempotent=True)
    async def ship(item: str) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            ends.append("cancelled")
            raise
        ends.append("finished")
        return item

    result = await ship.apply_async(("box",), task_id=unique("ship"))
    async with app.worker([queue], concurrency=1):
        await started.wait()
        # Another run completes the key (as when this run's lease had lapsed):
        # the next renewal finds the key gone from this run and cancels it.
        done = ResultRecord(task_id=result.id, state=State.SUCCESS, result="other-run")
        await backend.complete(result.id, "other-worker", done)
        assert await result.get(timeout=3) == "other-run"
        await wait_until(
            lambda: _idle(app, queue), timeout=3, message="the requeued delivery acked unrun"
        )
    assert ends == ["cancelled"]


async def _idle(app: App, queue: str) -> bool:
    stats = await app.broker.stats(queue)
    return stats.ready + stats.delayed + stats.unacked == 0


async def test_renewal_keeps_a_lapsed_key_nobody_took_and_loses_a_taken_one(
    backend: ResultBackend,
) -> None:
    lapsed, taken = unique("lapsed"), unique("taken")
    for key in (lapsed, taken):
        assert (await backend.claim(key, "me", key, 0.1)).status is ClaimStatus.CLAIMED
    await asyncio.sleep(0.2)  # both leases run out
    assert (await backend.claim(taken, "other", taken, 5.0)).status is ClaimStatus.CLAIMED
    assert await backend.renew(lapsed, "me", lapsed, 5.0) is True
    assert (await backend.claim(lapsed, "other", lapsed, 5.0)).status is ClaimStatus.BUSY
    assert await backend.renew(taken, "me", taken, 5.0) is False


class SlowClaims(MemoryResultBackend):
    """Claims wait for the test, so a delivery can be lost in the middle of one."""

    def __init__(self) -> None:
        super().__init__()
        self.claiming, self.proceed = asyncio.Event(), asyncio.Event()

    async def claim(self, key: str, owner: str, task_id: str, lease_s: float) -> Claim:
        self.claiming.set()
        await self.proceed.wait()
        return await super().claim(key, owner, task_id, lease_s)


async def test_a_delivery_lost_during_its_claim_never_starts_and_frees_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend, broker, queue = SlowClaims(), MemoryBroker(), unique("q")
    app = App(broker=broker, results=backend)
    runs: list[str] = []
    consumers: list[Consumer] = []
    consume = broker.consume

    async def capture(queues: Sequence[str], *, prefetch: int) -> Consumer:
        consumers.append(await consume(queues, prefetch=prefetch))
        return consumers[-1]

    @app.task(queue=queue, idempotent=True)
    async def once() -> None:
        runs.append("ran")

    result = await once.delay()
    broker.consume = capture  # type: ignore[method-assign]
    async with app.worker([queue], concurrency=1, prefetch=1):
        await backend.claiming.wait()
        await consumers[0].close()  # the delivery is lost while its key is being claimed
        await wait_until(lambda: "lost its delivery" in caplog.text, message="the loss noticed")
        backend.proceed.set()
        await wait_until(lambda: _ready(broker, queue), message="the delivery redelivered")
    assert runs == [], "a run whose delivery was lost before it started must not start"
    # The claim was released: the redelivery may claim the key at once.
    claim = await backend.claim(result.id, "next-run", result.id, 5.0)
    assert claim.status is ClaimStatus.CLAIMED


async def _ready(broker: MemoryBroker, queue: str) -> bool:
    return (await broker.stats(queue)).ready == 1
