"""Rate limits in SQLite: the ``rate_limits`` table (schema v3), GCRA with bookings.

One row per limited key holds its TAT (``tat``: Unix time the next token
is free); one row per booked token holds the time of that token, under the
key ``{key}\\x1f{ticket}`` (names and ids are printable, so the separator
never occurs in them). ``reserve`` is one write transaction on the
connection's thread (``aioack._sqlite``): atomic across every process using
the file. The logic is ``aioack.results.rates.step``.
"""

from __future__ import annotations

import sqlite3
import time

from aioack.results.rates import step

#: Rows whose time is this many seconds past are deleted by ``sweep``: a TAT
#: in the past means "free now", like no row; a booking that old is void
#: (``late_s`` is at most a tenth of an hour or two intervals of a day).
STALE_AFTER_S = 2 * 86_400.0 + 3_600.0

_SEPARATOR = "\x1f"


def reserve(
    conn: sqlite3.Connection,
    *,
    key: str,
    ticket: str,
    interval_s: float,
    late_s: float,
    now: float | None = None,
    sweep_too: bool = False,
) -> float:
    """Seconds until ``ticket``'s token of ``key`` (0: now); books it if later.

    ``now`` (Unix time) is read inside the transaction unless given (tests):
    a time read before waiting for the write lock would hand out a token
    already in the past.
    """
    if now is None:
        now = time.time()
    if sweep_too:
        sweep(conn, now=now)
    booking_key = f"{key}{_SEPARATOR}{ticket}"
    tat, booked = (
        _time_of(conn, key),
        _time_of(conn, booking_key),
    )
    taken = step(tat, booked, now=now, interval_s=interval_s, late_s=late_s)
    if taken.tat is not None:
        _put(conn, key, taken.tat)
    if taken.book_at is not None:
        _put(conn, booking_key, taken.book_at)
    elif taken.drop_booking:
        conn.execute("DELETE FROM rate_limits WHERE key = ?", (booking_key,))
    return taken.wait_s


def sweep(conn: sqlite3.Connection, *, now: float) -> None:
    """Delete rows that can no longer matter (a few hundred at a time)."""
    conn.execute(
        "DELETE FROM rate_limits WHERE rowid IN "
        "(SELECT rowid FROM rate_limits WHERE tat < ? LIMIT 500)",
        (now - STALE_AFTER_S,),
    )


def _time_of(conn: sqlite3.Connection, key: str) -> float | None:
    row = conn.execute("SELECT tat FROM rate_limits WHERE key = ?", (key,)).fetchone()
    return None if row is None else float(row[0])


def _put(conn: sqlite3.Connection, key: str, at: float) -> None:
    conn.execute("INSERT OR REPLACE INTO rate_limits (key, tat) VALUES (?, ?)", (key, at))
