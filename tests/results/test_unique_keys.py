"""Unique-enqueue keys on every result backend: taken once, freed by the holder or by time."""

from __future__ import annotations

import asyncio
import sqlite3

from aioack.results import ResultBackend
from aioack.results.redis import RedisResultBackend
from aioack.results.sqlite import SQLiteResultBackend
from aioack.results.sqlite import unique as sqlite_unique
from tests.support import unique, wait_until


async def test_the_first_reserve_takes_the_key_and_later_ones_get_its_holder(
    backend: ResultBackend,
) -> None:
    key = unique("k")
    assert await backend.reserve_unique(key, "first", 60) is None
    assert await backend.reserve_unique(key, "second", 60) == "first"
    # The holder asking again is told it holds it: a repeated call publishes nothing.
    assert await backend.reserve_unique(key, "first", 60) == "first"
    assert await backend.reserve_unique(unique("other"), "second", 60) is None


async def test_only_the_holder_frees_a_key(backend: ResultBackend) -> None:
    key = unique("k")
    await backend.reserve_unique(key, "holder", 60)
    await backend.unreserve_unique(key, "someone-else")
    assert await backend.reserve_unique(key, "late", 60) == "holder"
    await backend.unreserve_unique(key, "holder")
    assert await backend.reserve_unique(key, "late", 60) is None
    await backend.unreserve_unique(unique("never-taken"), "holder")  # nothing to free: no error


async def test_a_window_that_ended_frees_the_key_and_its_old_holder_cannot_free_the_new_one(
    backend: ResultBackend,
) -> None:
    key = unique("k")
    assert await backend.reserve_unique(key, "old", 0.2) is None

    async def taken_by_new() -> bool:
        return await backend.reserve_unique(key, "new", 60) is None

    await wait_until(taken_by_new, timeout=10, interval=0.05, message="the window to end")
    await backend.unreserve_unique(key, "old")  # its publish failed late: too late to free
    assert await backend.reserve_unique(key, "third", 60) == "new"


def _clients_of(shared: ResultBackend, count: int) -> list[ResultBackend]:
    """``count`` clients of the store ``shared`` uses, each with its own connection."""
    if isinstance(shared, RedisResultBackend):
        return [RedisResultBackend(shared.location, key_prefix=shared.prefix) for _ in range(count)]
    if isinstance(shared, SQLiteResultBackend):
        return [SQLiteResultBackend(shared.location) for _ in range(count)]
    return [shared] * count  # memory: one process's store, one instance


async def test_concurrent_reserves_through_separate_clients_take_the_key_once(
    backend: ResultBackend,
) -> None:
    clients, key = _clients_of(backend, 10), unique("k")
    try:
        holders = await asyncio.gather(
            *(client.reserve_unique(key, f"id-{i}", 60) for i, client in enumerate(clients))
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients if c is not backend))
    winners = [f"id-{i}" for i, holder in enumerate(holders) if holder is None]
    assert len(winners) == 1, f"{len(winners)} clients took one key"
    assert {holder for holder in holders if holder is not None} == set(winners)


def test_sqlite_sweep_deletes_keys_whose_window_ended_and_keeps_live_ones() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE unique_keys (key TEXT PRIMARY KEY, task_id TEXT NOT NULL, "
        "expires_at REAL NOT NULL)"
    )
    for key, ttl_s in (("ended-1", 1), ("ended-2", 1), ("live", 1000)):
        assert (
            sqlite_unique.reserve(conn, key=key, task_id=key, now=0, ttl_s=ttl_s, sweep=False)
            is None
        )
    sqlite_unique.reserve(conn, key="new", task_id="new", now=10, ttl_s=60, sweep=True)
    left = {row[0] for row in conn.execute("SELECT key FROM unique_keys")}
    assert left == {"live", "new"}
