"""Review of f097e4f (synchronous dispatch): a shutdown that stop() did not start
(run() cancelled, or a crashed loop) must not start unstarted jobs, and nothing
may outlive run()."""

from __future__ import annotations

import asyncio

import pytest

from aioack import App
from aioack.brokers import Delivery
from aioack.brokers.redis import RedisBroker
from tests.support import wait_until


class _ReleaseHangs(RedisBroker):
    """Hand-back of unstarted deliveries never answers (a broker that went slow)."""

    async def release(self, delivery: Delivery) -> None:
        await asyncio.sleep(3600)


async def test_cancelling_run_starts_no_unstarted_job_and_leaves_no_run_behind(
    redis_url: str, queue: str
) -> None:
    broker = _ReleaseHangs.from_url(redis_url, visibility_timeout=5, poll_interval=0.05)
    app, started = App(broker=broker), []

    @app.task(queue=queue)
    async def work(n: int) -> None:
        started.append(n)
        await asyncio.sleep(60 if len(started) == 1 else 0.3)

    for n in range(5):
        await work.delay(n)
    before = asyncio.all_tasks()
    worker = app.worker([queue], concurrency=1, prefetch=5, shutdown_timeout=0.3)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: len(started) == 1, message="one started")
    await wait_until(lambda: _unacked(broker, queue, 5), message="all five received")
    run.cancel()  # e.g. a TaskGroup sibling failed
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 15)
    left = asyncio.all_tasks() - before - {asyncio.current_task()}
    await asyncio.sleep(0.5)
    names = sorted(t.get_name() for t in left)
    for t in left:
        t.cancel()
    await broker.aclose()
    assert (started[1:], names) == ([], []), "unstarted jobs started / tasks outlived run()"


async def _unacked(broker: RedisBroker, queue: str, n: int) -> bool:
    return (await broker.stats(queue)).unacked == n
