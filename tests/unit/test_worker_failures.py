"""A worker whose own loop hits a bug stops and says so; it never hangs silently."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from aioack import App
from aioack.brokers import Consumer, DeadLetter, Delivery, MemoryBroker
from aioack.results import MemoryResultBackend
from aioack.testing import run_until_idle
from tests.support import wait_until


class _BrokenConsumer(Consumer):
    async def get(self, timeout_s: float) -> Delivery | None:
        raise RuntimeError("bug in a consumer")

    async def cancel(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _BrokenBroker(MemoryBroker):
    async def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        return _BrokenConsumer()


async def test_a_crashed_receive_loop_stops_the_worker_with_the_error() -> None:
    app = App(broker=_BrokenBroker())
    before = asyncio.all_tasks()
    with pytest.raises(RuntimeError, match="bug in a consumer"):
        await app.worker(["q"]).run()
    # Nothing the worker started outlives run(), crashed or not.
    assert asyncio.all_tasks() - before == set()


class _LettersFailOnce(MemoryBroker):
    """Its dead-letter store refuses the first letter with details (like a header that
    cannot be encoded), and takes a bare one."""

    def __init__(self, *, always: bool = False) -> None:
        super().__init__()
        self.always = always
        self.refused = 0

    async def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        if self.always or not letter.detail.startswith("details dropped"):
            self.refused += 1
            raise OverflowError("int too large to convert (test)")
        await super().dead_letter(delivery, letter)


async def test_a_dead_letter_that_cannot_be_written_is_written_bare() -> None:
    broker = _LettersFailOnce()
    app, runs = App(broker=broker), []

    @app.task(queue="q")
    async def good(n: int) -> None:
        runs.append(n)

    await broker.connect()
    await broker.declare(["q"])
    await broker.publish("q", b"not json", message_id="bad")
    await good.delay(1)
    await run_until_idle(app, ["q"])
    assert runs == [1], "the worker went on"
    [letter] = await broker.dead_letters("q")
    assert (letter.reason, letter.body, broker.refused) == ("malformed", b"not json", 1)
    assert "OverflowError" in letter.detail


async def test_a_settle_that_keeps_failing_leaves_the_message_on_the_broker() -> None:
    broker = _LettersFailOnce(always=True)
    app, runs = App(broker=broker), []

    @app.task(queue="q")
    async def good(n: int) -> None:
        runs.append(n)

    await broker.connect()
    await broker.declare(["q"])
    await broker.publish("q", b"not json", message_id="bad")
    await good.delay(1)
    worker = app.worker(["q"], concurrency=1)
    async with worker:
        await wait_until(lambda: runs == [1], message="the next message ran")
    # Not lost: given up by this worker, back on the queue when its consumer closed.
    assert (await broker.stats("q")).ready == 1
    assert broker.refused == 2


async def test_an_unforeseen_error_while_checking_a_delivery_dead_letters_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = MemoryBroker()
    app, runs = App(broker=broker), []

    @app.task(queue="q")
    async def good(n: int) -> None:
        runs.append(n)

    @app.task(queue="q")
    async def explodes() -> None:
        raise AssertionError("never runs")

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug in the checks")

    monkeypatch.setattr(explodes.signature, "from_wire", broken)
    await broker.connect()
    await explodes.delay()
    await good.delay(1)
    await run_until_idle(app, ["q"])
    assert runs == [1], "the receive loop survived"
    [letter] = await broker.dead_letters("q")
    assert letter.reason == "malformed"
    assert "RuntimeError: a bug in the checks" in letter.detail


async def test_a_bug_between_a_claim_and_its_settle_leaves_no_renewer_and_frees_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = MemoryResultBackend()
    app = App(broker=MemoryBroker(), results=backend, idempotency_lease=0.3)

    @app.task(queue="q", idempotent=True)
    async def work() -> None:
        return None

    result = await work.delay()
    worker = app.worker(["q"], concurrency=1, shutdown_timeout=0.2)

    async def broken_settle(*args: Any) -> None:
        raise RuntimeError("a bug after the run, before its settle")

    monkeypatch.setattr(worker, "_settle", broken_settle)
    before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    async with worker:
        await wait_until(lambda: _renewers() == 0 and _ran(worker), message="the run ended")
        # The run is over: its renewer is gone and its claim released, and its
        # delivery was requeued (counted), not left taking a prefetch slot.
        claim = await backend.claim(result.id, "another-run", result.id, 5.0)
        assert claim.status.value == "claimed", "the key was still held by the dead run"
        worker.stop()
    left = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} - before
    assert not left, left


def _renewers() -> int:
    return sum(1 for t in asyncio.all_tasks() if t.get_name().startswith("aioack-renew-"))


def _ran(worker: Any) -> bool:
    return not worker._runs.tasks and worker._acks is not None and not worker._acks.held_count
