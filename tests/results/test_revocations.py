"""The revocation log of every result backend, and the worker's reader of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aioack.results import ResultBackend
from aioack.results.base import Revocation
from aioack.results.redis import RedisResultBackend
from aioack.results.revocations import MAX_REVOKE_EXPIRES_S, READ_BATCH
from aioack.results.sqlite import SQLiteResultBackend
from aioack.worker.revocations import Revocations
from tests.proxy import TcpProxy
from tests.results.conftest import BackendFactory
from tests.support import REDIS_URL, unique, wait_until


def _in(seconds: float) -> float:
    return time.time() + seconds


async def test_a_reader_gets_what_came_after_its_cursor_once(backend: ResultBackend) -> None:
    found, start = await backend.revocations_after(None, 0)
    assert found == []
    await backend.revoke([Revocation("a", False, _in(60)), Revocation("b", True, _in(60))])
    found, cursor = await backend.revocations_after(start, 0)
    assert [(r.task_id, r.terminate) for r in found] == [("a", False), ("b", True)]
    assert await backend.revocations_after(cursor, 0) == ([], cursor)
    # A reader starting now (cursor None) sees every live one.
    found, _ = await backend.revocations_after(None, 0)
    assert {r.task_id for r in found} == {"a", "b"}


async def test_expired_revocations_are_left_out(backend: ResultBackend) -> None:
    await backend.revoke([Revocation("old", False, _in(-1)), Revocation("new", False, _in(60))])
    found, _ = await backend.revocations_after(None, 0)
    assert [r.task_id for r in found] == ["new"]


async def test_a_waiting_reader_wakes_on_a_revoke(backend: ResultBackend) -> None:
    _, cursor = await backend.revocations_after(None, 0)
    reader = asyncio.ensure_future(backend.revocations_after(cursor, 30))
    await asyncio.sleep(0.1)
    assert not reader.done()
    await backend.revoke([Revocation("late", False, _in(60))])
    # Well before its 30 s wait ends: it woke on the revoke.
    found, _ = await asyncio.wait_for(reader, 10)
    assert [r.task_id for r in found] == ["late"]


async def test_a_worker_loads_more_than_one_batch_at_start(backend: ResultBackend) -> None:
    count = READ_BATCH * 2 + 5
    until = _in(60)
    await backend.revoke([Revocation(f"t{i}", i == 7, until) for i in range(count)])
    terminated: list[str] = []
    revocations = Revocations(backend, terminated.append)
    await revocations.load()
    assert all(f"t{i}" in revocations for i in range(count))
    assert "t-unknown" not in revocations
    assert terminated == ["t7"]


async def test_a_revocation_is_forgotten_when_it_expires(backend: ResultBackend) -> None:
    await backend.revoke([Revocation("brief", False, _in(0.3))])
    revocations = Revocations(backend, lambda _: None)
    await revocations.load()
    assert "brief" in revocations
    await asyncio.sleep(0.4)
    assert "brief" not in revocations


async def test_sqlite_another_process_on_the_file_reads_it_by_polling(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/results.db"
    writer, reader = SQLiteResultBackend(url), SQLiteResultBackend(url, poll_interval=0.05)
    try:
        _, cursor = await reader.revocations_after(None, 0)
        waiting = asyncio.ensure_future(reader.revocations_after(cursor, 30))
        await asyncio.sleep(0.1)
        await writer.revoke([Revocation("x", True, _in(60))])
        found, _ = await asyncio.wait_for(waiting, 10)
        assert [(r.task_id, r.terminate) for r in found] == [("x", True)]
    finally:
        await writer.aclose()
        await reader.aclose()


@pytest.mark.parametrize("results_kind", ["redis"])
async def test_redis_stream_entries_that_are_not_revocations_are_skipped(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend()
    assert isinstance(backend, RedisResultBackend)
    stream = f"{backend.prefix}:revocations"
    hostile = [
        {"task_id": "a\nforged line", "terminate": "1", "expires_at": "9e9"},
        {"task_id": "x" * 201, "terminate": "0", "expires_at": "9e9"},
        {"task_id": "ok?", "terminate": "yes", "expires_at": "9e9"},
        {"task_id": "nan", "terminate": "1", "expires_at": "nan"},
        {"task_id": "bytes", "terminate": "1", "expires_at": b"\xff"},
        {"other": "field"},
    ]
    for fields in hostile:
        await backend.client.xadd(stream, fields)  # type: ignore[arg-type]
    await backend.revoke([Revocation("good", True, _in(60))])
    found, _ = await backend.revocations_after(None, 0)
    assert [r.task_id for r in found] == ["good"]


async def test_a_worker_hears_revokes_again_after_the_backend_connection_was_cut(
    redis_proxy: TcpProxy,
) -> None:
    """The watch loop outlives an outage: it retries, then reads what came after."""
    prefix = unique("aioack-test")
    direct = RedisResultBackend(REDIS_URL, key_prefix=prefix)
    through_proxy = RedisResultBackend(redis_proxy.url(), key_prefix=prefix)
    terminated: list[str] = []
    revocations = Revocations(through_proxy, terminated.append)
    watching: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watching.set_result(None)
    try:
        await revocations.load()
        watching = asyncio.ensure_future(revocations.watch())
        await direct.revoke([Revocation("before-cut", True, _in(60))])
        await wait_until(lambda: "before-cut" in revocations, timeout=10, message="first")
        redis_proxy.refuse()
        redis_proxy.cut()
        await direct.revoke([Revocation("during-cut", True, _in(60))])
        await asyncio.sleep(0.5)  # the loop fails and backs off meanwhile
        assert "during-cut" not in revocations
        redis_proxy.accept()
        await wait_until(lambda: "during-cut" in revocations, timeout=15, message="after")
        assert terminated == ["before-cut", "during-cut"]
        assert not watching.done()
        watching.cancel()
        # Bounded: a cancel the client swallows must still end the loop.
        done, _ = await asyncio.wait({watching}, timeout=10)
        assert done, "the watch loop did not stop when cancelled"
    finally:
        if not watching.done():  # a failed assertion above: never leave it running
            watching.cancel()
            await asyncio.wait({watching}, timeout=10)
        keys = [k async for k in direct.client.scan_iter(f"{prefix}:*")]
        if keys:
            await direct.client.delete(*keys)
        await direct.aclose()
        await through_proxy.aclose()


@pytest.mark.parametrize("results_kind", ["redis"])
async def test_redis_a_stored_expiry_past_the_maximum_is_brought_back_to_it(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend()
    assert isinstance(backend, RedisResultBackend)
    fields = {"task_id": "forever", "terminate": "0", "expires_at": "1e18"}
    await backend.client.xadd(f"{backend.prefix}:revocations", fields)  # type: ignore[arg-type]
    found, _ = await backend.revocations_after(None, 0)
    assert [r.task_id for r in found] == ["forever"]
    assert found[0].expires_at <= time.time() + MAX_REVOKE_EXPIRES_S


def test_the_worker_keeps_the_latest_expiring_when_over_its_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("aioack.worker.revocations.MAX_KEPT", 10)
    revocations = Revocations(None, lambda _: None)
    now = time.time()
    revocations._apply([Revocation(f"old{i}", False, now - 1) for i in range(5)])
    revocations._apply([Revocation(f"t{i}", False, now + 100 + i) for i in range(12)])
    assert not any(f"old{i}" in revocations for i in range(5))  # expired: dropped first
    assert [f"t{i}" in revocations for i in range(12)] == [False] * 2 + [True] * 10
