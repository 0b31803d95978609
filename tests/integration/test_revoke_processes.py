"""Revoke across real worker processes: a worker started after a revoke honours
it, and a running one hears a terminate at once (docs/task-control.md).

Task-body starts are counted in a ledger file every process appends to.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from aioack import App, State
from tests.conftest import broker_url, make_broker
from tests.support import (
    REDIS_URL,
    require_service,
    start_worker_process,
    stop_worker_process,
    unique,
    wait_until,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def start_worker(url: str, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    return await start_worker_process("tests.apps.revocable:app", url, env, log, "-c", "4")


def results_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":  # no server at all: results in a file beside the broker's
        return f"sqlite:///{tmp_path}/results.db"
    require_service(REDIS_URL)
    return f"{REDIS_URL}?key_prefix={unique('aioack-test')}"


@pytest.mark.parametrize("kind", ["redis", "rabbitmq", "sqlite"])
async def test_revokes_hold_in_a_worker_started_later_and_terminate_reaches_a_running_one(
    kind: str, tmp_path: Path
) -> None:
    queue, ledger = unique("revoke"), tmp_path / "ledger.txt"
    ledger.touch()
    url, results = broker_url(kind), results_url(kind, tmp_path)
    env = {
        **os.environ,
        "AIOACK_TEST_QUEUE": queue,
        "AIOACK_TEST_LEDGER": str(ledger),
        "AIOACK_RESULTS_URL": results,
    }
    producer = App(broker=make_broker(kind), results=results)
    quick = producer.task(name="revocable.quick", queue=queue)(_quick)
    slow = producer.task(name="revocable.slow", queue=queue)(_slow)
    first = second = None
    try:
        # Revoked before any worker exists: one queued, one delayed.
        queued = await quick.delay(1)
        delayed = await quick.apply_async((2,), countdown=6)
        await producer.revoke([queued.id, delayed.id])
        running, kept = await slow.delay(), await quick.delay(3)

        first = await start_worker(url, env, tmp_path / "first.log")
        await wait_until(
            lambda: {"start slow", "start quick 3"} <= set(ledger.read_text().splitlines()),
            timeout=30,
            message="the first worker ran the slow task and the kept one",
        )
        await running.revoke(terminate=True)  # heard by the running worker
        await wait_until(
            lambda: "cancelled slow" in ledger.read_text(), timeout=15, message="the cancel"
        )
        # Stored once the cancelled body has returned: a moment after its last line.
        await wait_until(
            lambda: _state_is(running.state(), State.REVOKED), timeout=10, message="REVOKED"
        )
        assert await queued.state() is State.REVOKED

        # The delayed one comes due after the first worker is gone: only the
        # second, started after the revoke, can receive it.
        await stop_worker_process(first)
        second = await start_worker(url, env, tmp_path / "second.log")
        await wait_until(
            lambda: _state_is(delayed.state(), State.REVOKED),
            timeout=30,
            message="the delayed task revoked by the second worker",
        )
        lines = ledger.read_text().splitlines()
        assert sorted(lines) == ["cancelled slow", "start quick 3", "start slow"], lines
        assert await kept.get(timeout=5) == 3
        # Every message settled: the revoked one's state is stored before its
        # ack, so the ack may still be on its way (seen on a loaded machine).
        await wait_until(
            lambda: _nothing_pending(producer, queue), timeout=10, message="every message acked"
        )
    finally:
        for worker in (first, second):
            if worker is not None:
                await stop_worker_process(worker)
        await producer.broker.delete([queue])
        await producer.aclose()


async def _quick(n: int) -> int:  # the producer's view of tests/apps/revocable.py
    raise NotImplementedError


async def _slow() -> str:
    raise NotImplementedError


async def _nothing_pending(producer: App, queue: str) -> bool:
    return (await producer.broker.stats(queue)).pending == 0


async def _state_is(state: object, wanted: State) -> bool:
    assert asyncio.iscoroutine(state)
    return await state is wanted
