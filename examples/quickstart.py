"""A tour of aioack on its embedded default broker: a real worker, no server.

Run it from the repository root:

    python examples/quickstart.py

This process enqueues some runs; then a separate worker process,
``python -m aioack worker examples.quickstart_tasks:app --burst``, works
through them and says what became of each (done, retried, dead-lettered);
then this process reads the dead letters back. Both processes share one
SQLite file: the broker is a file, durable, and needs no server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, Python puts only examples/ on the path

# A fresh file each run, named the documented way (AIOACK_BROKER_URL): the
# worker process gets it from the environment too. Without it, both would
# use the default, aioack.db in the current directory.
QUEUE_FILE = Path(tempfile.mkdtemp(prefix="aioack-quickstart-")) / "queue.db"
os.environ["AIOACK_BROKER_URL"] = f"sqlite:///{QUEUE_FILE}"

from examples.quickstart_tasks import (  # noqa: E402 (after the environment is set)
    app,
    charge_card,
    poll_report,
    resize_image,
    send_welcome,
    sync_crm,
)


async def enqueue() -> None:
    async with app:
        # delay() checks the arguments against the signature, then publishes.
        await send_welcome.delay(42, "ada@example.com")
        await sync_crm.delay("acme")
        await poll_report.delay("q3-sales")
        await resize_image.delay("cat.png", width=320)
        # apply_async() takes options: this run becomes ready in 0.1 s.
        await send_welcome.apply_async(args=(7, "grace@example.com"), countdown=0.1)
        await charge_card.delay(1001)
        # A wrong argument fails here, at the call site, not later in a worker.
        try:
            await send_welcome.delay("not a number", "bob@example.com")  # type: ignore[arg-type]
        except TypeError as exc:
            print(f"refused at the call site: {str(exc).splitlines()[0]}")
    print(f"enqueued 6 runs into {QUEUE_FILE}\n")


def work() -> int:
    """A separate worker process, as in production; --burst: exit once all is done."""
    command = [sys.executable, "-m", "aioack", "worker", "examples.quickstart_tasks:app"]
    command += ["--burst", "-c", "4", "--hook", "examples.quickstart_tasks:Narrate"]
    command += ["--log-level", "ERROR"]
    print("$ " + " ".join(["python", *command[1:]]))
    return subprocess.run(command, cwd=ROOT, check=False).returncode


async def show_dead_letters() -> None:
    async with app:
        for letter in await app.broker.dead_letters("default"):
            print(f"\ndead letter kept in {QUEUE_FILE.name}: reason={letter.reason}")
            print(f"  error: {letter.error}")
            last = (letter.traceback or "").strip().splitlines()[-1:]
            print(f"  traceback ends with: {last[0] if last else '-'}")


if __name__ == "__main__":
    asyncio.run(enqueue())
    code = work()
    print(f"\nthe worker exited with {code} (0: every queue empty)")
    asyncio.run(show_dead_letters())
