"""The app that fault tests run in real ``python -m aioack worker`` processes.

Settings come from the environment, read when the module is imported:
``AIOACK_FAULT_QUEUE`` names the queue; tasks write one line per event to
files in ``AIOACK_FAULT_DIR`` (``started``, ``done``), small appends that
concurrent processes cannot interleave.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from aioack import App
from aioack.task import Task


def _mark(kind: str, n: int) -> None:
    path = Path(os.environ["AIOACK_FAULT_DIR"]) / kind
    with path.open("a") as file:
        file.write(f"{n} {os.getpid()}\n")


def make_app(queue: str, broker: str | None = None) -> tuple[App, dict[str, Task[..., None]]]:
    app = App(broker)

    @app.task(name="fault.work", queue=queue)
    async def work(n: int, seconds: float = 0.0) -> None:
        _mark("started", n)
        await asyncio.sleep(seconds)
        _mark("done", n)

    @app.task(name="fault.hold", queue=queue)
    async def hold(n: int) -> None:
        """Runs until the file ``release`` appears in the fault dir."""
        _mark("started", n)
        release = Path(os.environ["AIOACK_FAULT_DIR"]) / "release"
        while not release.exists():
            await asyncio.sleep(0.02)
        _mark("done", n)

    @app.task(name="fault.crash", queue=queue, delivery_limit=3)
    async def crash(n: int) -> None:
        """Kills its own worker process, every time: a crash loop."""
        _mark("started", n)
        os.kill(os.getpid(), signal.SIGKILL)

    return app, {"work": work, "hold": hold, "crash": crash}


app, tasks = make_app(os.environ.get("AIOACK_FAULT_QUEUE", "faults"))
