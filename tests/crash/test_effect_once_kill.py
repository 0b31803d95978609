"""Effect-once under SIGKILL: real worker processes killed at random points, on Redis.

200 idempotent tasks (task id = idempotency key), each published twice
(duplicate publish), worked by ``python -m aioack worker`` processes that are
SIGKILLed at random moments and restarted until every key completed. On top
of the random kills, a few keys kill their own worker right after their
effect (before the completion mark and the ack), so that window is always
hit. The check counts effect commits per key: a repeated effect shows as 2.
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
#: Keys whose first run SIGKILLs its worker between its effect and its ack.
CRASH_KEYS = [f"k{i:03d}" for i in range(7, TASKS, 40)]
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
        "AIOACK_TEST_CRASH_KEYS": ",".join(CRASH_KEYS),
    }
    producer = App(broker=broker_from_url(REDIS_URL), results=results_url)
    backend = producer.results
    assert isinstance(backend, RedisResultBackend)
    keys = [f"k{i:03d}" for i in range(TASKS)]
    rng = random.Random(os.environ.get("AIOACK_TEST_SEED"))
    kills = restarts = 0
    worker: asyncio.subprocess.Process | None = None
    try:
        # The producer's copy of the task: same name, queue and options as the worker's.
        record = producer.task(name="tests.apps.ledger.record", queue=queue, idempotent=True)(
            _record_stub
        )
        for key in keys:
            await record.apply_async((key,), task_id=key)
        deadline = time.monotonic() + 80
        worker = await start_worker(env)
        next_kill = time.monotonic() + rng.uniform(0.15, 0.5)
        # Done when every key completed and the entries killed workers held were
        # reclaimed and settled (duplicates of completed keys: acked unrun).
        while (
            await completed(backend, keys) < TASKS or (await producer.broker.stats(queue)).pending
        ):
            assert time.monotonic() < deadline, "not all keys completed in time"
            await asyncio.sleep(0.05)
            if worker.returncode is None and kills < KILLS and time.monotonic() >= next_kill:
                worker.send_signal(signal.SIGKILL)
                await worker.wait()
                kills += 1
                next_kill = time.monotonic() + rng.uniform(0.15, 0.5)
                if kills == KILLS // 2:  # duplicate publishes, with part of the keys done
                    for key in keys:
                        await record.apply_async((key,), task_id=key)
            if worker.returncode is not None:  # killed by the test, or by a crash key
                restarts += 1
                worker = await start_worker(env)
        worker.terminate()
        assert await asyncio.wait_for(worker.wait(), 30) == 0

        # Every effect committed exactly once: the count is per commit, so an
        # effect a rerun repeated would show here as 2.
        effects = await _counts(redis_client, f"{ledger}:effects")
        assert effects == dict.fromkeys(keys, 1), {k: n for k, n in effects.items() if n != 1}
        entries = await redis_client.hgetall(ledger)
        assert sorted(k.decode() for k in entries) == keys
        # The window was hit: every crash key's run got past its effect, was
        # killed before its completion mark, and ran again (not fenced: counted twice).
        passes = await _counts(redis_client, f"{ledger}:passes")
        assert all(passes[k] >= 2 for k in CRASH_KEYS), {k: passes[k] for k in CRASH_KEYS}
        # No run of a key ever started after the key was marked completed.
        done_at = {k: (await backend.fetch(k)).updated_at for k in keys}  # type: ignore[union-attr]
        starts = [s.decode().split() for s in await redis_client.lrange(f"{ledger}:starts", 0, -1)]
        late = [(k, float(t) - done_at[k]) for k, t in starts if float(t) > done_at[k]]
        assert late == [], f"runs started after their key completed: {late[:5]}"
        rerun_after_effect = sum(1 for n in passes.values() if n > 1)
        print(
            f"\n{TASKS} keys, {kills} SIGKILLs + {len(CRASH_KEYS)} self-kills "
            f"({restarts} restarts), {len(starts)} runs started, {rerun_after_effect} keys "
            "reran after their effect had committed; effects committed once each"
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
        ledger_keys = [k async for k in redis_client.scan_iter(f"{ledger}*")]
        await redis_client.delete(*ledger_keys, *keys_left)
        await producer.aclose()


async def _counts(client: aioredis.Redis, name: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in (await client.hgetall(name)).items()}


async def _record_stub(key: str) -> str:
    raise AssertionError("runs in the worker process only")
