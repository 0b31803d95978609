"""Unique enqueue, the producer side: the key (the same call is one key), and a cancelled call."""

from __future__ import annotations

import asyncio

import pytest

from aioack import App
from aioack._unique import MAX_UNIQUE_FOR_S, stored_key, unique_window_s
from aioack.brokers import MemoryBroker
from aioack.results import MemoryResultBackend


def test_the_default_key_is_the_call_and_an_explicit_one_is_scoped_by_task() -> None:
    same = stored_key("t", None, ["a", 1], {"x": {"b": 2, "a": 1}})
    assert same == stored_key("t", None, ["a", 1], {"x": {"a": 1, "b": 2}}), "key order matters"
    assert same != stored_key("t", None, ["a", 2], {"x": {"a": 1, "b": 2}})
    assert same != stored_key("other", None, ["a", 1], {"x": {"a": 1, "b": 2}})
    assert stored_key("t", "k", [], {}) == "t:k" != stored_key("other", "k", [], {})


def test_the_window_is_checked() -> None:
    assert unique_window_s(None, None) is None
    assert unique_window_s(2, None) == 2.0
    assert unique_window_s(MAX_UNIQUE_FOR_S, "k") == MAX_UNIQUE_FOR_S
    for bad in (True, "60"):
        with pytest.raises(ValueError, match="number of seconds"):
            unique_window_s(bad, None)  # type: ignore[arg-type]


async def test_positional_and_keyword_spellings_of_one_call_share_a_key() -> None:
    app = App(broker=MemoryBroker(), results=MemoryResultBackend())

    @app.task(queue="q")
    async def report(account: str, full: bool = False) -> str:
        return account

    first = await report.apply_async(("a",), unique_for=60)
    assert (await report.apply_async((), {"account": "a"}, unique_for=60)).id == first.id
    # A default passed explicitly is sent, so it is another call.
    assert (await report.apply_async(("a",), {"full": False}, unique_for=60)).id != first.id
    assert (await app.broker.stats("q")).ready == 2


class _GatedReserve(MemoryResultBackend):
    """Takes a key the way SQLite and Redis do: the take is queued and goes on even
    when its caller is cancelled (a write queued for the SQLite thread, a SET in
    the next Redis pipeline). Each take waits at a gate first."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()
        self.gate = asyncio.Event()
        self.takes: list[asyncio.Task[None]] = []

    async def reserve_unique(self, key: str, task_id: str, ttl_s: float) -> str | None:
        reply: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        async def take() -> None:
            await self.gate.wait()
            holder = await MemoryResultBackend.reserve_unique(self, key, task_id, ttl_s)
            if not reply.done():  # its caller may be gone: the take stays done
                reply.set_result(holder)

        self.takes.append(asyncio.ensure_future(take()))
        self.waiting.set()
        return await reply


async def test_a_call_cancelled_while_its_key_is_taken_leaves_the_key_free() -> None:
    backend = _GatedReserve()
    app = App(broker=MemoryBroker(), results=backend)

    @app.task(queue="q")
    async def report(account: str) -> str:
        return account

    await app.connect()
    call = asyncio.ensure_future(report.apply_async(("a",), unique_for=60, unique_key="k"))
    await asyncio.wait_for(backend.waiting.wait(), 5)
    call.cancel()
    await asyncio.sleep(0)  # the cancel reaches the call while its take still waits
    backend.gate.set()  # the take goes on after the cancel, as a batched write would
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, 5)
    await asyncio.wait_for(asyncio.gather(*backend.takes), 5)
    assert await backend.reserve_unique(f"{report.name}:k", "next", 60) is None, "key left held"
    await app.broker.declare(["q"])
    assert (await app.broker.stats("q")).ready == 0
