"""Effect-once: a credit that is applied once, though its task runs three times.

    python examples/effect_once.py [REDIS_URL]     # default redis://127.0.0.1:6379/0

The task credits an account inside ``ctx.effect()``, then fails on its first
attempt (as if the worker had died after the effect) and is retried; the
same credit is also published a second time with the same idempotency key.
The balance moves once. Keys are deleted at the end.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import redis.asyncio as aioredis

from aioack import App, Retry, TaskContext
from aioack.testing import run_until_idle

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
RUN = uuid.uuid4().hex[:8]  # this run's own keys and queue
BALANCES = f"example:{RUN}:balances"
QUEUE = f"example-{RUN}"


def make_app(redis_url: str) -> App:
    app = App(redis_url, results=f"{redis_url}?key_prefix=example:{RUN}")

    @app.task(name="payments.credit", queue=QUEUE, retry_backoff=0.1)
    async def credit(ctx: TaskContext, account: str, cents: int) -> int:
        async with ctx.effect("credit") as fx:
            fx.tx.hincrby(BALANCES, account, cents)  # commits with the mark, or not at all
        print(f"attempt {ctx.attempt}: credit {'applied' if fx.applied else 'already applied'}")
        if ctx.attempt == 1:
            raise Retry()  # fails after its effect: the retry must not credit again
        return cents

    return app


async def main(redis_url: str) -> int:
    app = make_app(redis_url)
    credit = app.tasks["payments.credit"]
    async with app:
        first = await credit.apply_async(("ada", 500), idempotency_key="deposit-1")
        await run_until_idle(app, [QUEUE])
        again = await credit.apply_async(("ada", 500), idempotency_key="deposit-1")
        await run_until_idle(app, [QUEUE])
        print("results:", await first.get(timeout=5), await again.get(timeout=5))
        client = aioredis.Redis.from_url(redis_url)
        balance = int(await client.hget(BALANCES, "ada") or 0)
        print(f"balance of ada: {balance} cents")
        keys = [k async for k in client.scan_iter(f"example:{RUN}:*")]
        await client.delete(*keys)
        await client.aclose()
        await app.broker.delete([QUEUE])
    return 0 if balance == 500 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_REDIS_URL)))
