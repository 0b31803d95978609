"""Per-key concurrency limits on every broker, with every result backend beside it.

The count is of task bodies running at once, taken inside the task, per key:
two in-process workers (each with room for many runs at once) share one
broker and one result backend, and a key may never have more than its limit
of bodies running.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from aioack import App, State
from aioack.brokers import Broker
from aioack.results import ResultBackend
from aioack.testing import run_until_idle

pytestmark = pytest.mark.contract

KEYS = ["alice", "bob", "carol"]
PER_KEY = 6


class Overlaps:
    """Bodies running at once, per key: the most seen, and every start."""

    def __init__(self) -> None:
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.starts: list[str] = []

    async def run(self, key: str, run_id: str, sleep_s: float) -> None:
        self.starts.append(run_id)
        self.running[key] += 1
        self.most[key] = max(self.most[key], self.running[key])
        try:
            await asyncio.sleep(sleep_s)
        finally:
            self.running[key] -= 1


async def _two_workers(app: App, queue: str) -> list[tuple[str, BaseException]]:
    first, second = await asyncio.gather(
        run_until_idle(app, [queue], concurrency=8), run_until_idle(app, [queue], concurrency=8)
    )
    return first + second


@pytest.mark.parametrize("limit", [1, 2])
async def test_runs_of_one_key_never_exceed_the_limit_across_two_workers(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str], limit: int
) -> None:
    queue, seen = new_queue(), Overlaps()
    app = App(broker=broker, results=results, idempotency_lease=2.0)

    @app.task(queue=queue, limit_concurrency=limit, concurrency_key="user", track_started=False)
    async def sync(user: str, n: int) -> None:
        await seen.run(user, f"{user}-{n}", 0.05)

    for n in range(PER_KEY):
        for user in KEYS:
            await sync.delay(user, n)
    assert await _two_workers(app, queue) == []

    # Every run started exactly once, and no key ever had more than its limit
    # running; with 16 worker slots free, the limit (not the slots) held them.
    assert Counter(seen.starts) == {f"{u}-{n}": 1 for u in KEYS for n in range(PER_KEY)}
    assert max(seen.most.values()) <= limit, dict(seen.most)
    assert (await broker.stats(queue)).pending == 0
    assert await broker.dead_letters(queue) == []


async def test_without_a_key_the_limit_is_for_the_whole_task(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    queue, seen = new_queue(), Overlaps()
    app = App(broker=broker, results=results, idempotency_lease=2.0)

    @app.task(queue=queue, limit_concurrency=2, track_started=False)
    async def export(n: int) -> None:
        await seen.run("all", str(n), 0.05)

    for n in range(10):
        await export.delay(n)
    assert await _two_workers(app, queue) == []
    assert sorted(seen.starts, key=int) == [str(n) for n in range(10)]
    assert seen.most["all"] <= 2, dict(seen.most)


async def test_a_key_callable_that_fails_dead_letters_the_delivery_and_the_worker_goes_on(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    app = App(broker=broker, results=results)
    ran: defaultdict[str, int] = defaultdict(int)

    def tenant_of(arguments: dict[str, Any]) -> Any:
        tenant = arguments["tenant"]
        if tenant == "boom":
            raise LookupError("no such tenant")
        return [tenant] if tenant == "junk" else tenant

    @app.task(queue=queue, limit_concurrency=1, concurrency_key=tenant_of)
    async def bill(tenant: str) -> str:
        ran[tenant] += 1
        return tenant

    bad = await bill.delay("boom")
    junk = await bill.delay("junk")
    good = await bill.delay("acme")
    assert await run_until_idle(app, [queue]) == []

    assert dict(ran) == {"acme": 1}
    assert await good.get(timeout=5) == "acme"
    letters = {d.message_id: d for d in await broker.dead_letters(queue)}
    assert {bad.id, junk.id} == set(letters)
    assert letters[bad.id].reason == "invalid_arguments"
    assert "LookupError: no such tenant" in (letters[bad.id].detail or "")
    assert "must return a str or an int" in (letters[junk.id].detail or "")
    assert await bad.state() is State.DEAD_LETTERED
