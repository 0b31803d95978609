"""Unique-enqueue keys in SQLite: table ``unique_keys(key, task_id, expires_at)`` (schema v2).

Each function runs on the backend's connection thread inside one write
transaction (``BEGIN IMMEDIATE``), so a take is atomic across every process
using the file. Times are Unix time, since other processes read them.
"""

from __future__ import annotations

import sqlite3

#: Rows whose window ended that one sweep deletes at most.
SWEEP_LIMIT = 500


def reserve(
    conn: sqlite3.Connection, *, key: str, task_id: str, now: float, ttl_s: float, sweep: bool
) -> str | None:
    """Take ``key`` for ``task_id``: None if this call took it, else the holder's task id."""
    # A window that ended frees its key; then the insert takes it, or finds the holder.
    conn.execute("DELETE FROM unique_keys WHERE key = ? AND expires_at <= ?", (key, now))
    taken = conn.execute(
        "INSERT OR IGNORE INTO unique_keys (key, task_id, expires_at) VALUES (?, ?, ?)",
        (key, task_id, now + ttl_s),
    )
    if sweep:  # now and then: keys nobody asked for again since their window ended
        conn.execute(
            "DELETE FROM unique_keys WHERE rowid IN "
            "(SELECT rowid FROM unique_keys WHERE expires_at <= ? LIMIT ?)",
            (now, SWEEP_LIMIT),
        )
    if taken.rowcount == 1:
        return None
    row = conn.execute("SELECT task_id FROM unique_keys WHERE key = ?", (key,)).fetchone()
    return str(row[0])


def unreserve(conn: sqlite3.Connection, *, key: str, task_id: str) -> None:
    """Free ``key`` only while ``task_id`` holds it."""
    conn.execute("DELETE FROM unique_keys WHERE key = ? AND task_id = ?", (key, task_id))
