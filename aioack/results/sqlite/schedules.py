"""Periodic schedules' state in SQLite: the ``schedules`` table (schema v3).

One row per schedule: (name, last_fire, next_fire, updated_at), Unix times.
Each function is one transaction on the connection's thread, so the last
fire only moves forward however many schedulers write it at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from aioack.results.base import ScheduleState


def record(
    conn: sqlite3.Connection,
    *,
    name: str,
    fired: float | None,
    next_fire: float | None,
    now: float,
) -> None:
    # MAX(NULL, x) is NULL in SQLite: COALESCE keeps whichever is known.
    conn.execute(
        "INSERT INTO schedules (name, last_fire, next_fire, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET "
        "last_fire = MAX(COALESCE(last_fire, excluded.last_fire), "
        "COALESCE(excluded.last_fire, last_fire)), "
        "next_fire = COALESCE(excluded.next_fire, next_fire), "
        "updated_at = excluded.updated_at",
        (name, fired, next_fire, now),
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
    return {row[0]: ScheduleState(row[0], row[1], row[2], row[3]) for row in rows}
