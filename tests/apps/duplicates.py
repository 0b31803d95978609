"""Worker app for the duplicate-id test: an idempotent task that counts its starts.

Configured through the environment: AIOACK_TEST_QUEUE, AIOACK_RESULTS_URL and
AIOACK_TEST_COUNTER (a Redis key incremented as the task body starts).
"""

import asyncio
import os

import redis.asyncio as aioredis

from aioack import App

QUEUE = os.environ["AIOACK_TEST_QUEUE"]
COUNTER = os.environ["AIOACK_TEST_COUNTER"]
RESULTS_URL = os.environ["AIOACK_RESULTS_URL"]

# A short lease: a copy sent back because its key is busy returns in 0.5 s.
app = App(results=RESULTS_URL, idempotency_lease=1.0)
_redis = aioredis.Redis.from_url(RESULTS_URL.split("?")[0])


@app.task(name="duplicates.charge", queue=QUEUE, idempotent=True)
async def charge(order: str) -> str:
    await _redis.incr(COUNTER)
    await asyncio.sleep(0.3)  # every copy is held by some worker meanwhile
    return f"charged {order}"
