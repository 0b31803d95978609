"""Per-key concurrency slots in SQLite: the ``key_slots`` table (schema v2).

One row per run holding a slot: (key, owner, ``until``, the lease deadline
in Unix time). Each function is one transaction on the connection's thread
(``aioack._sqlite``), so acquiring is atomic across every process using the
file. A key's expired rows (runs whose worker died) are deleted by the next
acquire of that key, and by any acquire an hour after they expired.
"""

from __future__ import annotations

import sqlite3

#: Seconds past its lease after which any acquire deletes a row of another key.
STALE_AFTER_S = 3_600.0


def acquire(
    conn: sqlite3.Connection, *, key: str, limit: int, owner: str, now: float, lease_s: float
) -> bool:
    # This key's lapsed rows are free to take. Other keys' are left to their
    # runs (a lapsed slot nobody took is still its run's to renew) until long
    # past their lease: then a dead run's row for a key nobody uses again goes.
    conn.execute("DELETE FROM key_slots WHERE key = ? AND until <= ?", (key, now))
    conn.execute("DELETE FROM key_slots WHERE until <= ?", (now - STALE_AFTER_S,))
    (others,) = conn.execute(
        "SELECT COUNT(*) FROM key_slots WHERE key = ? AND owner != ?", (key, owner)
    ).fetchone()
    if others >= limit:
        return False
    conn.execute(
        "INSERT OR REPLACE INTO key_slots (key, owner, until) VALUES (?, ?, ?)",
        (key, owner, now + lease_s),
    )
    return True


def renew(conn: sqlite3.Connection, *, key: str, owner: str, now: float, lease_s: float) -> bool:
    # A row still here was never swept by an acquire (even if its lease ran
    # out): nobody took its place, so it is still this run's. Gone: lost.
    updated = conn.execute(
        "UPDATE key_slots SET until = ? WHERE key = ? AND owner = ?", (now + lease_s, key, owner)
    )
    return updated.rowcount > 0


def release(conn: sqlite3.Connection, *, key: str, owner: str) -> None:
    conn.execute("DELETE FROM key_slots WHERE key = ? AND owner = ?", (key, owner))
