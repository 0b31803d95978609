"""Worker app for the revoke tests across processes.

Configured through the environment: AIOACK_TEST_QUEUE, AIOACK_RESULTS_URL (the
broker comes from --broker) and AIOACK_TEST_LEDGER, a file each task body
appends a line to when it starts (and when it is cancelled), so the test
counts body starts in every process.
"""

import asyncio
import os
from pathlib import Path

from aioack import App

QUEUE = os.environ["AIOACK_TEST_QUEUE"]
LEDGER = Path(os.environ["AIOACK_TEST_LEDGER"])

app = App(results=os.environ["AIOACK_RESULTS_URL"])


def note(line: str) -> None:
    with LEDGER.open("a") as ledger:
        ledger.write(line + "\n")


@app.task(name="revocable.quick", queue=QUEUE)
async def quick(n: int) -> int:
    note(f"start quick {n}")
    return n


@app.task(name="revocable.slow", queue=QUEUE)
async def slow() -> str:
    note("start slow")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        note("cancelled slow")
        raise
    return "finished"
