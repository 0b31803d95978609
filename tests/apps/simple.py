"""A small App for CLI tests (embedded broker unless --broker says otherwise)."""

import os
from pathlib import Path

from aioack import App, Hook
from aioack.hooks import WorkerEvent

app = App()


@app.task(queue="simple")
async def noop() -> None:
    return None


not_an_app = object()


class MarkStarted(Hook):
    """A hook for the CLI's --hook: writes the worker's queues to $AIOACK_TEST_MARK."""

    def on_worker_started(self, event: WorkerEvent) -> None:
        Path(os.environ["AIOACK_TEST_MARK"]).write_text(",".join(event.queues))


@app.task(queue="simple")
def note_frozen_objects() -> None:
    """Writes the frozen object count and the young threshold to $AIOACK_TEST_MARK."""
    import gc

    Path(os.environ["AIOACK_TEST_MARK"]).write_text(
        f"{gc.get_freeze_count()} {gc.get_threshold()[0]}"
    )
