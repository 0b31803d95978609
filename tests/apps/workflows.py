"""Worker app for the workflow SIGKILL test: a three-step chain whose middle step
hangs on its first start, so the test can SIGKILL the worker running it.

Configured through the environment: AIOACK_TEST_QUEUE, AIOACK_RESULTS_URL and
AIOACK_TEST_LEDGER (a file each step appends "name argument" to as it starts).
"""

import asyncio
import os
from pathlib import Path

from aioack import App

QUEUE = os.environ["AIOACK_TEST_QUEUE"]
LEDGER = Path(os.environ["AIOACK_TEST_LEDGER"])

app = App(results=os.environ["AIOACK_RESULTS_URL"])


def _started(name: str, value: int) -> int:
    """Log a start; how many starts of ``name`` there were before this one."""
    before = LEDGER.read_text().split().count(name) if LEDGER.exists() else 0
    with LEDGER.open("a") as ledger:
        ledger.write(f"{name} {value}\n")
    return before


@app.task(name="workflows.first", queue=QUEUE)
async def first(x: int) -> int:
    _started("first", x)
    return x + 1


@app.task(name="workflows.middle", queue=QUEUE)
async def middle(x: int) -> int:
    if _started("middle", x) == 0:
        await asyncio.sleep(300)  # the test SIGKILLs this worker meanwhile
    return x * 10


@app.task(name="workflows.last", queue=QUEUE)
async def last(x: int) -> int:
    _started("last", x)
    return x + 5
