"""Tasks for examples/sync_producer.py.

The App names no broker and no result backend: AIOACK_BROKER_URL and
AIOACK_RESULTS_URL do, for the script and its worker process alike.
"""

from __future__ import annotations

from aioack import App

app = App()


@app.task(name="sync_example.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="sync_example.count_tags")
def count_tags(tags: set[str]) -> int:
    # A set parameter gets a set: duplicates sent as a set stay removed.
    return len(tags)
