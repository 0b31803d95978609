"""Periodic schedules' state in each result backend: times kept to the millisecond,
a last fire from a clock ahead replaced, and a corrupt record read as unrecorded
(with a warning) instead of failing every scheduler that reads it."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from aioack.results import ResultBackend
from aioack.results.redis import RedisResultBackend
from aioack.results.sqlite import SQLiteResultBackend

TICK = 1_700_000_000.1000001  # every=0.1: k * 0.1, not a short decimal


async def test_a_fired_tick_is_kept_to_the_millisecond(backend: ResultBackend) -> None:
    await backend.record_schedule("beat", fired=TICK, next_fire=TICK + 0.1)
    state = (await backend.schedule_states(["beat"]))["beat"]
    assert state.last_fire is not None and round(state.last_fire * 1000) == round(TICK * 1000)
    assert state.next_fire is not None and round(state.next_fire * 1000) == round(
        (TICK + 0.1) * 1000
    )


async def test_the_last_fire_moves_forward_only_unless_it_is_from_a_clock_ahead(
    backend: ResultBackend,
) -> None:
    future = TICK + 86_400
    await backend.record_schedule("beat", fired=future, next_fire=None)
    await backend.record_schedule("beat", fired=TICK, next_fire=None)  # a slower scheduler
    assert (await backend.schedule_states(["beat"]))["beat"].last_fire == round(future, 3)
    await backend.record_schedule("beat", fired=TICK, next_fire=None, distrust_after=TICK + 30)
    assert (await backend.schedule_states(["beat"]))["beat"].last_fire == round(TICK, 3)


async def _corrupt(backend: ResultBackend, results_kind: str, tmp_path: Path) -> None:
    if isinstance(backend, RedisResultBackend):
        await backend.client.hset(f"{backend.prefix}:schedules", "beat", "not json")
        await backend.client.hset(f"{backend.prefix}:schedules", "list", "[1, 2]")
    elif isinstance(backend, SQLiteResultBackend):
        await backend.record_schedule("list", fired=TICK, next_fire=None)
        with sqlite3.connect(tmp_path / "results.db") as conn:
            conn.execute(
                "INSERT INTO schedules (name, last_fire, next_fire, updated_at) "
                "VALUES ('beat', 'not a time', NULL, 0)"
            )
            conn.execute("UPDATE schedules SET next_fire = x'00' WHERE name = 'list'")
    else:
        pytest.skip("memory keeps ScheduleState objects: nothing to corrupt")


@pytest.mark.parametrize("results_kind", ["redis", "sqlite"])  # memory keeps objects
async def test_a_corrupt_record_reads_as_unrecorded_and_the_next_fire_replaces_it(
    backend: ResultBackend,
    results_kind: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await backend.connect()
    await _corrupt(backend, results_kind, tmp_path)
    await backend.record_schedule("good", fired=TICK, next_fire=None)
    with caplog.at_level(logging.WARNING, logger="aioack.periodic"):
        assert set(await backend.schedule_states()) == {"good"}
        assert await backend.schedule_states(["beat", "list"]) == {}
    assert "periodic beat: its " in caplog.text and "not a schedule record" in caplog.text
    for name in ("beat", "list"):
        await backend.record_schedule(name, fired=TICK, next_fire=TICK + 0.1)
    states = await backend.schedule_states(["beat", "list"])
    assert {n: s.last_fire for n, s in states.items()} == {
        "beat": round(TICK, 3),
        "list": round(TICK, 3),
    }
