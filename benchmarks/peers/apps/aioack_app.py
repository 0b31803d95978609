"""aioack: ``python -m aioack worker benchmarks.peers.apps.aioack_app:app``. Late ack (default)."""

import os

from aioack import App
from benchmarks.peers import marker

QUEUE = os.environ.get("BENCH_QUEUE", "bench-aioack")
app = App(broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9"))


@app.task(name="bench.noop", queue=QUEUE)
async def noop() -> None:
    if marker.WAITS:  # the I/O-bound and memory scenarios
        await marker.wait()
    marker.done()
