"""A result-backend outage under ``ctx.effect()`` defers the run; it never fails it.

What is counted is effect commits (an INCR inside the block, read straight
from Redis, not through the cut connection) and task outcomes on the broker:
no dead letters, every key completed, every effect committed exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aioack import App, BrokerUnavailable, State, TaskContext
from aioack.brokers import MemoryBroker
from aioack.results import MemoryResultBackend
from aioack.results.base import Effect
from aioack.results.redis import RedisResultBackend
from aioack.testing import run_until_idle
from tests.proxy import TcpProxy
from tests.support import REDIS_URL, unique, wait_until

IN_FLIGHT = 8


async def test_a_cut_of_the_backend_connections_defers_effect_runs_and_none_is_dead_lettered(
    redis_proxy: TcpProxy,
) -> None:
    proxy = redis_proxy
    prefix = unique("aioack-test")
    backend = RedisResultBackend(proxy.url(), key_prefix=prefix)
    direct = RedisResultBackend(REDIS_URL, key_prefix=prefix)  # reads past the proxy
    app = App(broker=MemoryBroker(), results=backend, idempotency_lease=1.0)
    queue, go, started = unique("q"), asyncio.Event(), []

    @app.task(queue=queue, idempotent=True)
    async def credit(ctx: TaskContext, account: str) -> str:
        started.append(account)
        await go.wait()  # every run holds its claim when the connections are cut
        async with ctx.effect("credit") as fx:
            fx.tx.incr(f"{prefix}:credited:{account}")
        return account

    accounts = [f"a{i}" for i in range(IN_FLIGHT)]
    try:
        results = [await credit.apply_async((a,), task_id=unique(a)) for a in accounts]
        async with app.worker([queue], concurrency=IN_FLIGHT):
            await wait_until(lambda: len(started) == IN_FLIGHT, message="all runs in flight")
            proxy.cut()  # no outage: new connections succeed at once
            go.set()
            for result in results:  # waited for past the proxy: the test's own link is not cut
                record = await direct.wait(result.id, 15)
                assert record is not None and record.state is State.SUCCESS, record
        assert await app.broker.dead_letters(queue) == []
        assert (await app.broker.stats(queue)).pending == 0
        for account in accounts:
            commits = int(await direct.client.get(f"{prefix}:credited:{account}") or 0)
            assert commits == 1, f"{account}: effect committed {commits} times"
        assert len(started) > IN_FLIGHT, "the cut reached no effect block: nothing was tested"
    finally:
        keys = [k async for k in direct.client.scan_iter(f"{prefix}:*")]
        if keys:
            await direct.client.delete(*keys)
        await direct.aclose()
        await app.aclose()


class FlakyEffects(MemoryResultBackend):
    """Effect blocks over a dict: the first entry fails, then the first commit fails."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: dict[str, int] = {}
        self.failures = ["enter", "commit"]

    @contextlib.asynccontextmanager
    async def effect(self, key: str, name: str, task_id: str) -> AsyncIterator[Effect]:
        if self.failures[:1] == ["enter"]:
            self.failures.pop(0)
            raise BrokerUnavailable("result backend unreachable (test: at WATCH)")
        effect = Effect(key, name, tx=None)
        yield effect
        if self.failures[:1] == ["commit"]:
            self.failures.pop(0)
            raise BrokerUnavailable("result backend unreachable (test: at EXEC)")
        self.commits[key] = self.commits.get(key, 0) + 1
        effect.applied = True


async def test_a_run_that_swallows_the_outage_is_still_deferred_not_completed() -> None:
    backend = FlakyEffects()
    app = App(broker=MemoryBroker(), results=backend, idempotency_lease=0.2)
    queue, runs = unique("q"), []

    @app.task(queue=queue, idempotent=True, max_retries=0)
    async def credit(ctx: TaskContext) -> str:
        runs.append(ctx.attempt)
        with contextlib.suppress(BrokerUnavailable):  # a task that hides the error
            async with ctx.effect():
                pass
        return "done"

    result = await credit.delay()
    assert await run_until_idle(app, [queue]) == []
    # Entry failed, then commit failed, then the third run committed: each
    # outage deferred the same attempt (max_retries=0 would dead-letter a retry).
    assert runs == [1, 1, 1]
    assert backend.commits == {result.id: 1}
    assert await result.state() is State.SUCCESS
    assert await app.broker.dead_letters(queue) == []
