"""Rate-limit tokens (GCRA with bookings) on every result backend.

The algorithm is checked by an injected clock (memory: its clock; SQLite:
``now`` passed to the statement function); Redis reads its own ``TIME``, so
its checks use real time with intervals wide enough for a loaded machine.
Atomicity is checked by clients racing through separate connections.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Awaitable, Callable

import pytest

from aioack.results import MemoryResultBackend, ResultBackend
from aioack.results.redis import RedisResultBackend
from aioack.results.sqlite import SQLiteResultBackend
from aioack.results.sqlite import rates as sqlite_rates
from aioack.results.sqlite.backend import _V3
from tests.support import unique

Reserve = Callable[[str, float], Awaitable[float]]

#: (when, ticket, seconds to wait that reserve_rate must return), one token a
#: second, a booking honoured up to 0.5 s late.
SCRIPT = [
    (0.0, "a", 0.0),  # the key's first token is free now
    (0.0, "b", 1.0),  # the next is a second later: booked for b
    (0.0, "c", 2.0),  # and the one after for c: everyone at once gets their own
    (0.5, "b", 0.5),  # b back early: the rest of its wait, still booked (no new token)
    (1.0, "b", 0.0),  # b at its token: runs
    (1.0, "b", 2.0),  # a second copy of b: its booking is used up, it books the next
    (2.6, "c", 1.4),  # c 0.6 s late: its token is void, it books anew (after b's)
    (3.0, "d", 2.0),  # a newcomer queues behind c
    (20.0, "e", 0.0),  # a key idle for long: free now, no burst saved up
    (20.0, "f", 1.0),
]
INTERVAL_S, LATE_S = 1.0, 0.5


def _memory_at(clock: list[float]) -> Reserve:
    backend = MemoryResultBackend(clock=lambda: clock[0])

    async def reserve(ticket: str, now: float) -> float:
        clock[0] = now
        return await backend.reserve_rate("task", ticket, INTERVAL_S, LATE_S)

    return reserve


def _sqlite_at() -> Reserve:
    conn = sqlite3.connect(":memory:")
    for statement in _V3:
        conn.execute(statement)

    async def reserve(ticket: str, now: float) -> float:
        with conn:
            return sqlite_rates.reserve(
                conn, key="task", ticket=ticket, interval_s=INTERVAL_S, late_s=LATE_S, now=now
            )

    return reserve


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_tokens_are_one_interval_apart_and_bookings_are_kept_by_an_injected_clock(
    kind: str,
) -> None:
    reserve = _memory_at([0.0]) if kind == "memory" else _sqlite_at()
    got = [(now, ticket, round(await reserve(ticket, now), 6)) for now, ticket, _ in SCRIPT]
    assert got == SCRIPT


def test_sqlite_sweep_deletes_only_rows_that_can_no_longer_matter() -> None:
    conn = sqlite3.connect(":memory:")
    for statement in _V3:
        conn.execute(statement)
    for ticket in ("now", "booked"):
        sqlite_rates.reserve(conn, key="old", ticket=ticket, interval_s=1, late_s=1, now=0)
    sqlite_rates.reserve(conn, key="live", ticket="x", interval_s=1, late_s=1, now=10**6)
    sqlite_rates.reserve(conn, key="live", ticket="y", interval_s=1, late_s=1, now=10**6)
    sqlite_rates.sweep(conn, now=10**6)
    assert {row[0] for row in conn.execute("SELECT key FROM rate_limits")} == {
        "live",
        "live\x1fy",
    }


async def test_callers_at_once_each_get_their_own_token_and_a_booking_is_kept(
    backend: ResultBackend,
) -> None:
    key = unique("rate")
    waits = [await backend.reserve_rate(key, f"t{i}", 0.5, 0.25) for i in range(3)]
    # Real time (Redis reads its own clock): bounds wide enough for a busy machine.
    assert waits[0] == 0
    assert 0.3 < waits[1] <= 0.5 and 0.8 < waits[2] <= 1.0, waits
    again = await backend.reserve_rate(key, "t2", 0.5, 0.25)
    assert 0 < again <= waits[2], "asking again waits the rest of its booking, no new token"
    await asyncio.sleep(again)
    assert await backend.reserve_rate(key, "t2", 0.5, 0.25) == 0, "its token: run"
    assert await backend.reserve_rate(unique("other"), "t9", 0.5, 0.25) == 0, "keys are apart"


def _clients_of(shared: ResultBackend, count: int) -> list[ResultBackend]:
    """``count`` clients of the store ``shared`` uses, each with its own connection."""
    if isinstance(shared, RedisResultBackend):
        return [RedisResultBackend(shared.location, key_prefix=shared.prefix) for _ in range(count)]
    if isinstance(shared, SQLiteResultBackend):
        return [SQLiteResultBackend(shared.location) for _ in range(count)]
    return [shared] * count  # memory: one process's store, one instance


async def test_clients_racing_through_separate_connections_never_share_a_token(
    backend: ResultBackend,
) -> None:
    clients, key, interval_s = _clients_of(backend, 20), unique("rate"), 2.0
    try:
        waits = await asyncio.gather(
            *(c.reserve_rate(key, f"t{i}", interval_s, 0.1) for i, c in enumerate(clients))
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients if c is not backend))
    waits = sorted(waits)
    assert waits[0] == 0 and waits[1] > 0, f"{waits.count(0)} callers got the free token"
    # Each wait ends at its own token: one interval after the one before, give or
    # take how far apart the calls reached the store (not a whole interval).
    gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
    assert min(gaps) > interval_s / 2, gaps
