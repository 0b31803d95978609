"""The App fault tests run in real worker processes.

Settings come from the environment (this is a test fixture, not library code):
``AIOACK_FAULT_QUEUE`` names the queue, ``AIOACK_FAULT_LOG`` a file each run
appends one line to per event, so the test can see what ran where.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from aioack import App, TaskContext

QUEUE = os.environ.get("AIOACK_FAULT_QUEUE", "faults")
LOG = os.environ.get("AIOACK_FAULT_LOG", os.devnull)

app = App()


def record(*parts: object) -> None:
    # One short O_APPEND write per line: lines from several processes never interleave.
    line = (" ".join(map(str, parts)) + "\n").encode()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task(queue=QUEUE)
async def work(ctx: TaskContext, n: int, sleep_s: float = 0.0) -> None:
    record("start", n, os.getpid(), ctx.delivery_count)
    await asyncio.sleep(sleep_s)
    record("done", n, os.getpid())


@app.task(queue=QUEUE, delivery_limit=3)
async def suicide(ctx: TaskContext, n: int) -> None:
    record("suicide", n, os.getpid(), ctx.delivery_count)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(
    queue=QUEUE,
    autoretry_for=(ValueError,),
    max_retries=2,
    retry_backoff=0.5,
    retry_jitter=False,
)
async def flaky(ctx: TaskContext, n: int) -> None:
    record("attempt", n, ctx.attempt, f"{time.time():.3f}")
    if ctx.attempt <= 2:
        raise ValueError("not yet")
    record("done", n, os.getpid())
