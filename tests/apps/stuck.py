"""An App whose task never ends by itself, for the shutdown-deadline test: each
run touches ``$AIOACK_TEST_STARTED``, then waits until it is cancelled."""

import asyncio
import os
from pathlib import Path

from aioack import App

app = App()


@app.task(queue="stuck", name="stuck.forever")
async def forever() -> None:
    Path(os.environ["AIOACK_TEST_STARTED"]).touch()  # noqa: ASYNC240 - test-only, one stat
    await asyncio.Event().wait()
