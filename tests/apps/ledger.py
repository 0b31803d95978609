"""The effect-once kill test's worker app: idempotent tasks with a fenced effect.

Configured by the test through the environment: AIOACK_TEST_QUEUE,
AIOACK_TEST_LEDGER (key prefix of the ledger), AIOACK_RESULTS_URL and
AIOACK_TEST_CRASH_KEYS (comma-separated keys whose first run kills its own
worker right after its effect).

Each run logs its start (``{ledger}:starts``, "key start-time"), then makes
its effect in a ``ctx.effect()`` block: an entry in the ledger hash
``{ledger}`` keyed by the idempotency key, and a count of effect commits in
``{ledger}:effects``. Outside the block it counts the runs that got past the
effect (``{ledger}:passes``): those are not fenced, so they show how often
the test's kills landed between an effect and its completion mark.
"""

import asyncio
import os
import random
import signal
import time

import redis.asyncio as aioredis

from aioack import App, TaskContext

QUEUE = os.environ["AIOACK_TEST_QUEUE"]
LEDGER = os.environ["AIOACK_TEST_LEDGER"]
RESULTS_URL = os.environ["AIOACK_RESULTS_URL"]
CRASH_KEYS = frozenset(os.environ.get("AIOACK_TEST_CRASH_KEYS", "").split(","))

# A short lease: a claim held by a killed worker is taken over after 1 s.
app = App(results=RESULTS_URL, idempotency_lease=1.0)
_ledger = aioredis.Redis.from_url(RESULTS_URL.split("?")[0])


@app.task(queue=QUEUE, idempotent=True)
async def record(ctx: TaskContext, key: str) -> str:
    await _ledger.rpush(f"{LEDGER}:starts", f"{key} {time.time()!r}")
    await asyncio.sleep(random.uniform(0.0, 0.04))  # work before the effect
    async with ctx.effect() as fx:
        fx.tx.hset(LEDGER, key, ctx.id)
        fx.tx.hincrby(f"{LEDGER}:effects", key, 1)
    await _ledger.hincrby(f"{LEDGER}:passes", key, 1)
    if key in CRASH_KEYS and await _ledger.set(f"{LEDGER}:crashed:{key}", 1, nx=True):
        os.kill(os.getpid(), signal.SIGKILL)  # after the effect, before completion and ack
    await asyncio.sleep(random.uniform(0.0, 0.02))  # work after the effect, before the ack
    return key
