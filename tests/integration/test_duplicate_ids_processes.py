"""Copies of one task id across two real worker processes start the body once.

Both workers prefetch copies at the same time; the count is of task-body
starts, incremented in Redis by the task itself.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aioack import App, State
from tests.conftest import broker_url, make_broker
from tests.support import REDIS_URL, require_service, start_worker_process, unique, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    require_service(REDIS_URL)
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def start_worker(url: str, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    app_ref = "tests.apps.duplicates:app"
    return await start_worker_process(app_ref, url, env, log, "-c", "4", "--prefetch", "8")


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
@pytest.mark.parametrize("copies", [2, 10])
async def test_copies_of_one_task_id_start_once_across_two_worker_processes(
    kind: str, copies: int, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    queue, counter, prefix = unique("dupes"), unique("starts"), unique("aioack-test")
    results_url = f"{REDIS_URL}?key_prefix={prefix}"
    env = {
        **os.environ,
        "AIOACK_TEST_QUEUE": queue,
        "AIOACK_TEST_COUNTER": counter,
        "AIOACK_RESULTS_URL": results_url,
    }
    url = broker_url(kind)
    producer = App(broker=make_broker(kind), results=results_url)
    charge = producer.task(name="duplicates.charge", queue=queue, idempotent=True)(_stub)
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = []
    try:
        await producer.connect()
        await producer.broker.declare([queue])
        workers = [await start_worker(url, env, log) for log in logs]
        await wait_until(
            lambda: (
                all("worker ready" in log.read_text() for log in logs if log.exists())
                and all(log.exists() for log in logs)
            ),
            timeout=20,
            message="both workers ready",
        )
        task_id = unique("fixed")
        for _ in range(copies):
            result = await charge.apply_async(("o-1",), task_id=task_id)
        assert await result.get(timeout=20) == "charged o-1"

        async def settled() -> bool:
            return (await producer.broker.stats(queue)).pending == 0

        await wait_until(settled, timeout=20, message="every copy settled")
        starts = int(await redis_client.get(counter) or 0)
        assert starts == 1, f"{copies} copies started the body {starts} times"
        assert await result.state() is State.SUCCESS
        assert await producer.broker.dead_letters(queue) == []
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.terminate()
        deadline = time.monotonic() + 20
        for worker in workers:
            await asyncio.wait_for(worker.wait(), max(0.1, deadline - time.monotonic()))
        await producer.broker.delete([queue])
        keys = [k async for k in redis_client.scan_iter(f"{prefix}:*")]
        await redis_client.delete(counter, *keys)
        await producer.aclose()


async def _stub(order: str) -> str:
    raise AssertionError("runs in the worker processes only")
