"""A worker's embedded scheduler never takes the worker down: an unexpected error
in a pass is logged and retried with backoff, and the worker's block runs on."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import pytest

import aioack.periodic.scheduler as scheduler_module
from aioack import App
from aioack.cli.scheduling import embedded
from aioack.periodic import Scheduler
from tests.support import wait_until


async def test_a_scheduler_bug_is_logged_and_retried_not_raised_into_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(f"sqlite:///{tmp_path}/broker.db", results=f"sqlite:///{tmp_path}/results.db")

    @app.periodic(every=60)
    @app.task
    async def beat() -> None: ...

    passes = 0

    async def broken_pass(self: Scheduler) -> float:
        nonlocal passes
        passes += 1
        raise AttributeError("'str' object has no attribute 'get'")  # a decoding bug

    monkeypatch.setattr(Scheduler, "run_once", broken_pass)
    monkeypatch.setattr(scheduler_module, "RETRY_AFTER_S", 0.01)
    args = argparse.Namespace(scheduler=None, scheduler_lease=30.0)
    worker_ran = False
    with caplog.at_level(logging.ERROR, logger="aioack.periodic"):
        async with embedded(app, args):
            await wait_until(lambda: passes >= 3, 20, message="the scheduler retried")
            await asyncio.sleep(0)
            worker_ran = True  # stands for worker.run(): still running
    await app.aclose()
    assert worker_ran
    assert "unexpected error; trying again" in caplog.text


def test_retries_back_off_up_to_a_minute() -> None:
    waits = [Scheduler._retry_after(n) for n in range(1, 10)]
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0] and waits[-1] == scheduler_module.MAX_RETRY_AFTER_S
