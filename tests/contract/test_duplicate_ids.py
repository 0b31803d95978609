"""Effect-once on every broker: copies of one task id start the task body once.

The count is of *starts of the task body*, taken inside the task, not of
ledger entries: two copies of one id that both start are a failure even when
the ledger ends up with one completion.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from aioack import App
from aioack.brokers import Broker
from aioack.results import ResultBackend
from aioack.testing import run_until_idle
from tests.support import unique

pytestmark = pytest.mark.contract


@pytest.mark.parametrize("copies", [2, 3, 10])
async def test_copies_of_one_task_id_start_the_body_once_in_one_worker(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str], copies: int
) -> None:
    queue = new_queue()
    # A short lease: a copy sent back because the key is busy returns quickly.
    app = App(broker=broker, results=results, idempotency_lease=0.6)
    starts: list[str] = []

    @app.task(queue=queue, idempotent=True)
    async def charge(order: str) -> str:
        starts.append(order)
        await asyncio.sleep(0.2)  # long enough for every copy to be held at once
        return f"charged {order}"

    task_id = unique("fixed")
    handles = [await charge.apply_async(("o-1",), task_id=task_id) for _ in range(copies)]
    # All copies prefetched by one worker and run side by side (-c 4 and more).
    assert await run_until_idle(app, [queue], concurrency=max(4, copies)) == []
    assert starts == ["o-1"], f"{copies} copies of one id started the body {len(starts)} times"
    assert await handles[0].get(timeout=5) == "charged o-1"
    assert (await broker.stats(queue)).pending == 0
    assert await broker.dead_letters(queue) == []
