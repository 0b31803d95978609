"""Task-control edges found in review: each test failed before its fix.

- an early-acked run whose concurrency slot was taken is deferred, not lost;
- a plain def abandoned by its time limit keeps its slot until its thread returns;
- a revoke heard while a run is starting (taking its slot) stops it before the body.
"""

from __future__ import annotations

import asyncio
import threading
import time

from aioack import App, State
from aioack.brokers import MemoryBroker
from aioack.results import MemoryResultBackend
from aioack.testing import run_until_idle


async def test_an_early_acked_run_that_lost_its_slot_runs_again_later() -> None:
    backend = MemoryResultBackend()
    app = App(broker=MemoryBroker(), results=backend, idempotency_lease=0.3)
    started, runs = asyncio.Event(), []

    @app.task(queue="q", limit_concurrency=1, concurrency_key="user", acks_late=False)
    async def sync(user: str) -> str:
        runs.append(user)
        if len(runs) == 1:
            started.set()
            await asyncio.sleep(30)
        return user

    result = await sync.delay("u1")
    worker = asyncio.ensure_future(run_until_idle(app, ["q"]))
    await asyncio.wait_for(started.wait(), 5)
    key = f"{sync.name}:u1"
    backend._slots.clear()  # the lease lapsed (a stalled backend)...
    assert await backend.acquire_slot(key, 1, "intruder", 30)  # ...and another run took it
    await asyncio.sleep(1.0)  # the renewal finds it gone and cancels the run
    await backend.release_slot(key, "intruder")
    assert await asyncio.wait_for(worker, 10) == []
    assert runs == ["u1", "u1"]  # acked early, yet run again: a copy was deferred
    assert await result.state() is State.SUCCESS
    assert (await app.broker.stats("q")).pending == 0


async def test_a_thread_abandoned_by_its_time_limit_keeps_its_slot_until_it_returns() -> None:
    app = App(broker=MemoryBroker(), results=MemoryResultBackend())
    lock, running, most = threading.Lock(), [0], [0]

    @app.task(
        queue="q",
        limit_concurrency=1,
        concurrency_key="user",
        time_limit=0.2,
        max_retries=0,
        track_started=False,
    )
    def sync(user: str, n: int) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.6)  # goes on after the time limit abandoned the run
        finally:
            with lock:
                running[0] -= 1

    for n in range(3):
        await sync.delay("alice", n)
    errors = await run_until_idle(app, ["q"], concurrency=4)
    assert [type(e).__name__ for _, e in errors] == ["TimeLimitExceeded"] * 3
    await asyncio.sleep(0.8)  # the last thread ends
    assert most[0] == 1


class _SlowSlots(MemoryResultBackend):
    """Taking a slot waits at a gate: a slow round trip (SQLite's write queue, Redis loaded)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.entered = asyncio.Event(), asyncio.Event()

    async def acquire_slot(self, key: str, limit: int, owner: str, lease_s: float) -> bool:
        self.entered.set()
        await self.gate.wait()
        return await super().acquire_slot(key, limit, owner, lease_s)


async def test_a_revoke_heard_while_a_run_takes_its_slot_stops_it_before_the_body() -> None:
    results = _SlowSlots()
    app = App(broker=MemoryBroker(), results=results)
    ran: list[int] = []

    @app.task(queue="q", limit_concurrency=1, track_started=False)
    async def job(n: int) -> None:
        ran.append(n)

    result = await job.delay(1)

    async def revoke_while_taking_the_slot() -> None:
        await results.entered.wait()
        await app.revoke(result.id, terminate=True)
        await asyncio.sleep(0.1)  # the worker hears it (memory: at once)
        results.gate.set()

    revoking = asyncio.ensure_future(revoke_while_taking_the_slot())
    assert await run_until_idle(app, ["q"]) == []
    await revoking
    assert ran == []
    assert await result.state() is State.REVOKED
    assert results._slots == {}  # its slot was given back
