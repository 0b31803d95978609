"""A run the shutdown deadline cancels does not read STARTED afterwards.

Handed back (acks_late, the default) it will run again: RETRY. Acked early
(acks_late=False) it never will: FAILURE. Either way the worker knows that its
grace period ran out (``timed_out``: the command line's exit code 10).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aioack import App
from aioack.results import State


@pytest.mark.parametrize(
    ("acks_late", "state", "queued"),
    [(True, State.RETRY, 1), (False, State.FAILURE, 0)],
    ids=["handed-back", "acked-early"],
)
async def test_a_run_cancelled_at_the_shutdown_deadline_no_longer_reads_started(
    tmp_path: Path, acks_late: bool, state: State, queued: int
) -> None:
    app = App(f"sqlite:///{tmp_path}/q.db", results=f"sqlite:///{tmp_path}/r.db")
    started = asyncio.Event()

    @app.task(name="stuck", queue="stuck", acks_late=acks_late)
    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    async with app:
        result = await stuck.delay()
        worker = app.worker(["stuck"], shutdown_timeout=0.1)
        async with worker:
            await asyncio.wait_for(started.wait(), 30)
            assert await result.state() is State.STARTED
        assert worker.timed_out and not worker.forced
        record = await result.record()
        assert record is not None and record.state is state, record
        assert record.error_type == "shutdown"
        assert (await app.broker.stats("stuck")).ready == queued


async def test_a_drain_that_finishes_in_time_is_not_timed_out(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path}/q.db", results=f"sqlite:///{tmp_path}/r.db")
    started, release = asyncio.Event(), asyncio.Event()

    @app.task(name="brief", queue="brief")
    async def brief() -> int:
        started.set()
        await release.wait()
        return 1

    async with app:
        result = await brief.delay()
        worker = app.worker(["brief"], shutdown_timeout=30)
        async with worker:
            await asyncio.wait_for(started.wait(), 30)
            worker.stop()
            release.set()
        assert not worker.timed_out and not worker.forced
        assert await result.state() is State.SUCCESS
