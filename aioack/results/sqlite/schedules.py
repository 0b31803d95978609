"""Periodic schedules' state in SQLite: the ``schedules`` table (schema v3).

One row per schedule: (name, last_fire, next_fire, updated_at), Unix times in
seconds, each a whole number of milliseconds (``tick_ms``): ticks are
compared by their milliseconds, as on every backend. Each function is one
transaction on the connection's thread, so the last fire only moves forward
however many schedulers write it at once. A row whose values are not times
(written by hand, another program) is read as a schedule never recorded, with
a warning, and the next fire replaces it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from aioack.results.base import ScheduleState, tick_ms

logger = logging.getLogger("aioack.periodic")

# The held last fire stays unless the fired tick is later (in whole ms), the held
# one is not a time (NULL, or a corrupt value: SQLite keeps text in a REAL
# column), or it is later than distrust_after (a clock ahead wrote it).
_RECORD = """
INSERT INTO schedules (name, last_fire, next_fire, updated_at)
VALUES (:name, :fired, :next_fire, :now)
ON CONFLICT (name) DO UPDATE SET
  last_fire = CASE
    WHEN excluded.last_fire IS NULL THEN last_fire
    WHEN typeof(last_fire) NOT IN ('integer', 'real') THEN excluded.last_fire
    WHEN ROUND(excluded.last_fire * 1000) > ROUND(last_fire * 1000) THEN excluded.last_fire
    WHEN :distrust_ms IS NOT NULL AND ROUND(last_fire * 1000) > :distrust_ms
      THEN excluded.last_fire
    ELSE last_fire END,
  next_fire = COALESCE(excluded.next_fire, next_fire),
  updated_at = excluded.updated_at
"""


def record(
    conn: sqlite3.Connection,
    *,
    name: str,
    fired: float | None,
    next_fire: float | None,
    now: float,
    distrust_after: float | None = None,
) -> None:
    conn.execute(
        _RECORD,
        {
            "name": name,
            "fired": _canonical(fired),
            "next_fire": _canonical(next_fire),
            "now": now,
            "distrust_ms": None if distrust_after is None else tick_ms(distrust_after),
        },
    )


def states(conn: sqlite3.Connection, *, names: Sequence[str] | None) -> dict[str, ScheduleState]:
    query = "SELECT name, last_fire, next_fire, updated_at FROM schedules"
    if names is None:
        rows = conn.execute(query).fetchall()
    else:
        wanted = list(names)
        rows = (
            []
            if not wanted
            else conn.execute(
                f"{query} WHERE name IN ({', '.join('?' * len(wanted))})", wanted
            ).fetchall()
        )
    decoded = (_decoded(row) for row in rows)
    return {state.name: state for state in decoded if state is not None}


def _decoded(row: Sequence[Any]) -> ScheduleState | None:
    name, last_fire, next_fire, updated_at = row
    if not all(_is_time(v) for v in (last_fire, next_fire, updated_at)):
        logger.warning(
            "periodic %s: its row in the schedules table is not a schedule record; "
            "read as never fired (the next fire replaces it)",
            name,
            extra={"event": "periodic_bad_state", "schedule": str(name)},
        )
        return None
    return ScheduleState(
        str(name),
        _canonical(last_fire),
        _canonical(next_fire),
        float(updated_at) if updated_at is not None else 0.0,
    )


def _is_time(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _canonical(instant: float | None) -> float | None:
    """``instant`` as the float of its whole milliseconds: one value per tick."""
    return None if instant is None else tick_ms(instant) / 1000
