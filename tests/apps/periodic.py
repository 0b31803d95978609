"""Worker and scheduler app for the periodic process tests.

Configured through the environment: AIOACK_TEST_QUEUE, AIOACK_RESULTS_URL,
AIOACK_TEST_LEDGER (each run appends "task id pid" to it when its body
starts) and AIOACK_TEST_EVERY (seconds between ticks).
"""

import os

from aioack import App, TaskContext

QUEUE = os.environ["AIOACK_TEST_QUEUE"]
LEDGER = os.environ["AIOACK_TEST_LEDGER"]

app = App(results=os.environ["AIOACK_RESULTS_URL"])


@app.periodic(every=float(os.environ.get("AIOACK_TEST_EVERY", "0.2")), name="beat", missed="all")
@app.task(name="periodic.beat", queue=QUEUE)
async def beat(ctx: TaskContext) -> None:
    # One short O_APPEND write per line: lines of several processes never interleave.
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
