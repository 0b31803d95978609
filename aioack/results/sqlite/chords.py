"""Chords in SQLite: tables ``chords`` and ``chord_members`` (schema v3).

``chord_members`` holds one row per member that completed, keyed by
(chord, member), so a duplicate delivery of a member inserts nothing;
``chords.fired_by`` names the member that completed the set, set once. Each
function runs on the backend's connection thread inside one write
transaction (``BEGIN IMMEDIATE``), so a count is atomic across every process
using the file. Times are Unix time, since other processes read them.
"""

from __future__ import annotations

import sqlite3

#: Chords whose time ended that one sweep deletes at most.
SWEEP_LIMIT = 100


def member_done(
    conn: sqlite3.Connection,
    *,
    chord_id: str,
    member_id: str,
    size: int,
    now: float,
    keep_s: float,
    sweep: bool,
) -> bool:
    """Count ``member_id``; True when publishing the callback is its job (see the backend)."""
    if sweep:  # now and then: chords nobody completed in time, with their members
        expired = "SELECT chord_id FROM chords WHERE expires_at <= ? LIMIT ?"
        conn.execute(f"DELETE FROM chord_members WHERE chord_id IN ({expired})", (now, SWEEP_LIMIT))
        conn.execute(f"DELETE FROM chords WHERE chord_id IN ({expired})", (now, SWEEP_LIMIT))
    # The first member fixes the size; a later message saying otherwise is not believed.
    # ... and each member keeps the count ``keep_s`` from now (see the backend).
    conn.execute(
        "INSERT INTO chords (chord_id, size, fired_by, expires_at) VALUES (?, ?, NULL, ?) "
        "ON CONFLICT (chord_id) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
        (chord_id, size, now + keep_s),
    )
    conn.execute(
        "INSERT OR IGNORE INTO chord_members (chord_id, member_id) VALUES (?, ?)",
        (chord_id, member_id),
    )
    conn.execute(
        "UPDATE chords SET fired_by = ? WHERE chord_id = ? AND fired_by IS NULL "
        "AND size <= (SELECT COUNT(*) FROM chord_members WHERE chord_id = ?)",
        (member_id, chord_id, chord_id),
    )
    row = conn.execute("SELECT fired_by FROM chords WHERE chord_id = ?", (chord_id,)).fetchone()
    return row is not None and row[0] == member_id
