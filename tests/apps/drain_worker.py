"""A worker process for the SIGTERM drain test, on the in-process broker.

It enqueues TASKS runs of a task that announces itself, then runs the worker
with signal handlers (as the CLI does). Each run waits for the file
``RELEASE_FILE`` to exist before it finishes. After the worker stops, it prints
the broker's final state as one JSON line and exits with the CLI's code.
"""

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from aioack import App
from aioack.cli import ExitCode

logging.basicConfig(level=logging.INFO)
app = App("memory://")  # one process: enqueues and works in itself
release = Path(os.environ["RELEASE_FILE"])


@app.task(queue="drain")
async def slow(n: int) -> None:
    print(f"started {n}", flush=True)
    while not release.exists():  # noqa: ASYNC240 - a cheap stat, test-only
        await asyncio.sleep(0.02)
    print(f"finished {n}", flush=True)


async def main() -> int:
    async with app:
        for n in range(int(os.environ.get("TASKS", "6"))):
            await slow.delay(n)
        worker = app.worker(["drain"], concurrency=2, prefetch=6, shutdown_timeout=10)
        await worker.run(install_signal_handlers=True)
        stats = await app.broker.stats("drain")
        consumer = await app.broker.consume(["drain"], prefetch=100)
        counts = []
        while (delivery := await consumer.get(0.05)) is not None:
            counts.append(delivery.delivery_count)
        state = {
            "ready": stats.ready,
            "unacked": stats.unacked,
            "dead": stats.dead,
            "counts": counts,
        }
        print("STATE " + json.dumps(state), flush=True)
        return ExitCode.FORCED_STOP if worker.forced else ExitCode.OK


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
