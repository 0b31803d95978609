"""Worker app for the concurrency-limit process tests: runs that write a ledger.

Configured through the environment: AIOACK_TEST_QUEUE, AIOACK_RESULTS_URL,
AIOACK_TEST_LEDGER (a file each run appends "key start end pid" to, start
and end in Unix time, written when the body ends), AIOACK_TEST_LIMIT and
AIOACK_TEST_LEASE (seconds).

``sync`` sleeps briefly. ``hold``'s first run ever (no AIOACK_TEST_LEDGER.held
file yet) writes its start, makes that file and sleeps a minute: the test
SIGKILLs its worker meanwhile.
"""

import asyncio
import os
import time
from pathlib import Path

from aioack import App

QUEUE = os.environ["AIOACK_TEST_QUEUE"]
LEDGER = Path(os.environ["AIOACK_TEST_LEDGER"])
LIMIT = int(os.environ.get("AIOACK_TEST_LIMIT", "1"))

app = App(
    results=os.environ["AIOACK_RESULTS_URL"],
    idempotency_lease=float(os.environ.get("AIOACK_TEST_LEASE", "5")),
)


def _write(line: str) -> None:
    # One short O_APPEND write per line: lines of several processes never interleave.
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.task(name="slots.sync", queue=QUEUE, limit_concurrency=LIMIT, concurrency_key="user")
async def sync(user: str, n: int) -> None:
    start = time.time()
    await asyncio.sleep(0.03)
    _write(f"{user} {start!r} {time.time()!r} {os.getpid()} {n}\n")


@app.task(name="slots.hold", queue=QUEUE, limit_concurrency=1, concurrency_key="user")
async def hold(user: str, n: int) -> None:
    start = time.time()
    held = LEDGER.with_suffix(".held")
    if not held.exists():
        held.write_text(f"{start!r} {os.getpid()}")
        await asyncio.sleep(60)  # killed before it ends
    _write(f"{user} {start!r} {time.time()!r} {os.getpid()} {n}\n")
