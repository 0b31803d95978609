"""An App whose tasks fail until ``$AIOACK_TEST_FIXED`` names a file; then each run
appends ``task n attempt deliveries`` to that file. For the ``dlq`` command line tests."""

import os
from pathlib import Path

from aioack import App, TaskContext

app = App()


def _fixed(ctx: TaskContext, n: int) -> bool:
    mark = os.environ.get("AIOACK_TEST_FIXED")
    if not mark:
        return False
    with Path(mark).open("a") as out:
        out.write(f"{ctx.task_name} {n} {ctx.attempt} {ctx.delivery_count}\n")
    return True


@app.task(queue="letters", name="mail.send", max_retries=0)
async def send(ctx: TaskContext, n: int) -> None:
    if not _fixed(ctx, n):
        raise ValueError(f"smtp down for {n}\n\x1b[2J[red]forged[/red]")


@app.task(queue="letters", name="report.build", max_retries=0)
async def build(ctx: TaskContext, n: int) -> None:
    if not _fixed(ctx, n):
        raise KeyError(n)
