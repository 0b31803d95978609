"""Effect-once under SIGKILL: real worker processes killed at random points, on Redis.

200 idempotent tasks (task id = idempotency key), each published twice
(duplicate publish), worked by ``python -m aioack worker`` processes that are
SIGKILLed at random moments and restarted until every key completed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aioack import App
from aioack.brokers import broker_from_url
from aioack.results import ResultRecord, State
from aioack.results.redis import RedisResultBackend
from tests.support import REDIS_URL, require_service, unique

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TASKS = 200
KILLS = 6
BROKER_OPTIONS = "visibility_timeout=1"


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    require_service(REDIS_URL)
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "aioack", "worker", "tests.apps.ledger:app"],
        *["--broker", f"{REDIS_URL}?{BROKER_OPTIONS}", "-c", "8", "--log-level", "WARNING"],
        cwd=ROOT,
        env=env,
    )


async def completed(backend: RedisResultBackend, keys: list[str]) -> int:
    raws = await backend.client.mget([f"{backend.prefix}:result:{k}" for k in keys])
    records = [ResultRecord.model_validate_json(r) for r in raws if r is not None]
    return sum(1 for r in records if r.state is State.SUCCESS)


async def test_sigkilled_workers_never_rerun_a_completed_key(
    redis_client: aioredis.Redis,
) -> None:
    queue, ledger, prefix = unique("idem"), unique("ledger"), unique("aioack-test")
    results_url = f"{REDIS_URL}?key_prefix={prefix}"
    env = {
        **os.environ,
        "AIOACK_TEST_QUEUE": queue,
        "AIOACK_TEST_LEDGER": ledger,
        "AIOACK_RESULTS_URL": results_url,
    }
    producer = App(broker=broker_from_url(REDIS_URL), results=results_url)
    backend = producer.results
    assert isinstance(backend, RedisResultBackend)
    keys = [f"k{i:03d}" for i in range(TASKS)]
    rng = random.Random(os.environ.get("AIOACK_TEST_SEED"))
    kills = 0
    worker: asyncio.subprocess.Process | None = None
    try:
        # The producer's copy of the task: same name, queue and options as the worker's.
        record = producer.task(name="tests.apps.ledger.record", queue=queue, idempotent=True)(
            _record_stub
        )
        for key in keys:
            await record.apply_async((key,), task_id=key)
        deadline = time.monotonic() + 75
        worker = await start_worker(env)
        # Done when every key completed and the entries killed workers held were
        # reclaimed and settled (duplicates of completed keys: acked unrun).
        while (
            await completed(backend, keys) < TASKS or (await producer.broker.stats(queue)).pending
        ):
            assert time.monotonic() < deadline, "not all keys completed in time"
            if kills < KILLS:
                await asyncio.sleep(rng.uniform(0.15, 0.5))
                worker.send_signal(signal.SIGKILL)
                await worker.wait()
                kills += 1
                if kills == KILLS // 2:  # duplicate publishes, with part of the keys done
                    for key in keys:
                        await record.apply_async((key,), task_id=key)
                worker = await start_worker(env)
            else:
                await asyncio.sleep(0.2)
        worker.terminate()
        assert await asyncio.wait_for(worker.wait(), 30) == 0

        # Exactly one ledger entry per key, and every key completed once.
        entries = await redis_client.hgetall(ledger)
        assert sorted(k.decode() for k in entries) == keys
        # No run of a key ever started after the key was marked completed.
        done_at = {k: (await backend.fetch(k)).updated_at for k in keys}  # type: ignore[union-attr]
        starts = [s.decode().split() for s in await redis_client.lrange(f"{ledger}:starts", 0, -1)]
        late = [(k, float(t) - done_at[k]) for k, t in starts if float(t) > done_at[k]]
        assert late == [], f"runs started after their key completed: {late[:5]}"
        effects = {
            k.decode(): int(v) for k, v in (await redis_client.hgetall(f"{ledger}:effects")).items()
        }
        repeated = {k: n for k, n in effects.items() if n > 1}
        # Repeats can only come from a kill between an effect and its completion
        # mark (the documented window), at most one per running slot per kill.
        assert len(repeated) <= kills * 8, repeated
        print(
            f"\n{TASKS} keys, {kills} SIGKILLs, {len(starts)} runs started, "
            f"{len(repeated)} effects repeated inside the effect->completion window"
        )
        stats = await producer.broker.stats(queue)
        assert stats.pending == 0, stats
    finally:
        if worker is not None and worker.returncode is None:
            worker.kill()
            await worker.wait()
        async with producer.broker as broker:
            await broker.delete([queue])
        keys_left = [k async for k in redis_client.scan_iter(f"{prefix}:*")]
        await redis_client.delete(ledger, f"{ledger}:starts", f"{ledger}:effects", *keys_left)
        await producer.aclose()


async def _record_stub(key: str) -> str:
    raise AssertionError("runs in the worker process only")
