"""Worker app for the rate-limit process tests: each run appends its start to a ledger.

Configured through the environment: AIOACK_TEST_QUEUE, AIOACK_RESULTS_URL,
AIOACK_TEST_LEDGER (a file each run appends "start pid" to, start in Unix
time, written as the body starts) and AIOACK_TEST_RATE (a rate_limit).
"""

import os
import time
from pathlib import Path

from aioack import App

QUEUE = os.environ["AIOACK_TEST_QUEUE"]
LEDGER = Path(os.environ["AIOACK_TEST_LEDGER"])

app = App(results=os.environ["AIOACK_RESULTS_URL"])


@app.task(
    name="rated.ping", queue=QUEUE, rate_limit=os.environ["AIOACK_TEST_RATE"], track_started=False
)
async def ping(n: int) -> None:
    # One short O_APPEND write per line: lines of several processes never interleave.
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{time.time()!r} {os.getpid()} {n}\n".encode())
    finally:
        os.close(fd)
