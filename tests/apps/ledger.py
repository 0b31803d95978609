"""The effect-once kill test's worker app: idempotent tasks writing to a Redis ledger.

Configured by the test through the environment: AIOACK_TEST_QUEUE,
AIOACK_TEST_LEDGER (key prefix of the ledger) and AIOACK_RESULTS_URL.

Each run logs its start (``{ledger}:starts``, "key start-time"), then makes
its effect: one entry in the ledger hash ``{ledger}`` keyed by the
idempotency key, and a count of effects in ``{ledger}:effects``.
"""

import asyncio
import os
import random
import time

import redis.asyncio as aioredis

from aioack import App, TaskContext

QUEUE = os.environ["AIOACK_TEST_QUEUE"]
LEDGER = os.environ["AIOACK_TEST_LEDGER"]
RESULTS_URL = os.environ["AIOACK_RESULTS_URL"]

# A short lease: a claim held by a killed worker is taken over after 1 s.
app = App(results=RESULTS_URL, idempotency_lease=1.0)
_ledger = aioredis.Redis.from_url(RESULTS_URL.split("?")[0])


@app.task(queue=QUEUE, idempotent=True)
async def record(ctx: TaskContext, key: str) -> str:
    await _ledger.rpush(f"{LEDGER}:starts", f"{key} {time.time()!r}")
    await asyncio.sleep(random.uniform(0.0, 0.04))  # work before the effect
    async with _ledger.pipeline(transaction=True) as pipe:
        pipe.hset(LEDGER, key, ctx.id)
        pipe.hincrby(f"{LEDGER}:effects", key, 1)
        await pipe.execute()
    await asyncio.sleep(random.uniform(0.0, 0.02))  # work after the effect, before the ack
    return key
