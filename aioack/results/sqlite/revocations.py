"""Revocations in SQLite: the ``revocations`` table is a log workers tail by ``seq``.

SQLite cannot notify another process, so a waiting reader reads again each
``poll_interval`` (a revocation made in the same process wakes it at once).
Adding one also deletes the expired ones, so the table holds only live rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from aioack.results import revocations
from aioack.results.base import Revocation


def add(conn: sqlite3.Connection, *, items: Sequence[Revocation], now: float) -> None:
    conn.execute("DELETE FROM revocations WHERE expires_at <= ?", (now,))
    conn.executemany(
        "INSERT INTO revocations (task_id, terminate, expires_at) VALUES (?, ?, ?)",
        [(item.task_id, int(item.terminate), item.expires_at) for item in items],
    )


def read_after(
    conn: sqlite3.Connection, *, cursor: int | None, now: float
) -> tuple[list[Revocation], int]:
    """Live revocations after ``cursor`` (None: from the first), and the last seq read."""
    rows = conn.execute(
        "SELECT seq, task_id, terminate, expires_at FROM revocations WHERE seq > ? "
        "ORDER BY seq LIMIT ?",
        (cursor or 0, revocations.READ_BATCH),
    ).fetchall()
    found: list[Revocation] = []
    last = cursor or 0
    for seq, task_id, terminate, expires_at in rows:
        last = seq
        item = revocations.decode(task_id, terminate, expires_at)
        if item is not None:
            found.append(item)
    return revocations.live(found, now), last
