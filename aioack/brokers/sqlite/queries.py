"""Every statement of the SQLite broker, as functions run on the connection's thread.

A settle names its delivery by (row id, owner, token) and changes nothing
when the row is no longer held that way (taken over after a lapsed lease):
it returns False and the broker raises LeaseLost. Times are Unix seconds,
shared by every process on the machine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from aioack.brokers.base import DeadLetter

#: (row id, queue, message id, body, deliveries, redelivered, token)
Row = tuple[int, str, str, bytes, int, int, int]
#: How a held delivery is named: (row id, owner, token).
Held = tuple[int, str, int]


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def publish(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, bytes, float]]) -> None:
    """Insert (queue, message id, body, ready_at) rows."""
    conn.executemany(
        "INSERT INTO messages (queue, message_id, body, ready_at) VALUES (?, ?, ?, ?)", rows
    )


def publish_bounded(
    conn: sqlite3.Connection,
    queue: str,
    rows: Sequence[tuple[str, str, bytes, float]],
    max_length: int,
) -> bool:
    """Insert ``rows`` into ``queue`` only if its waiting rows (ready + delayed,
    not held) leave room for all of them; False (nothing inserted) when not.

    Runs in the write transaction that inserts: no other process can add in
    between, so the queue never holds more than ``max_length`` waiting rows
    from publishes. (The count stops at ``max_length``: it costs at most that
    many index entries.)
    """
    (waiting,) = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM messages WHERE queue = ? AND owner IS NULL LIMIT ?)",
        (queue, max_length),
    ).fetchone()
    if waiting + len(rows) > max_length:
        return False
    publish(conn, rows)
    return True


def has_work(conn: sqlite3.Connection, queues: Sequence[str], now: float) -> bool:
    """A read: is anything claimable (ready, or held past its lease)? Takes no write lock."""
    marks = _marks(queues)
    ready = conn.execute(
        f"SELECT 1 FROM messages WHERE queue IN ({marks}) AND owner IS NULL AND ready_at <= ? "
        "LIMIT 1",
        (*queues, now),
    ).fetchone()
    if ready:
        return True
    lapsed = conn.execute(
        f"SELECT 1 FROM messages WHERE queue IN ({marks}) AND owner IS NOT NULL "
        "AND lease_until < ? LIMIT 1",
        (*queues, now),
    ).fetchone()
    return lapsed is not None


def claim(
    conn: sqlite3.Connection,
    queues: Sequence[str],
    owner: str,
    limit: int,
    now: float,
    lease_until: float,
    ceilings: Mapping[str, int] | None = None,
) -> tuple[list[Row], float | None]:
    """Claim up to ``limit`` rows, queues in priority order; and when to look next.

    Rows whose lease ran out (a dead or stalled worker) become claimable
    first, marked redelivered. A queue in ``ceilings`` (its ``max_unacked``)
    gives only what keeps its held rows, by every consumer, at or below it:
    counted in this write transaction, so no other process claims in between.
    Returns the rows (each queue's in order) and the Unix time the next
    delayed row comes due or the next lease lapses.
    """
    marks = _marks(queues)
    conn.execute(
        "UPDATE messages SET owner = NULL, lease_until = NULL, redelivered = 1 "
        f"WHERE queue IN ({marks}) AND owner IS NOT NULL AND lease_until < ?",
        (*queues, now),
    )
    rows: list[Row] = []
    for queue in queues:
        left = limit - len(rows)
        if left <= 0:
            break
        if ceilings and queue in ceilings:
            left = min(left, ceilings[queue] - _held_count(conn, queue, ceilings[queue]))
            if left <= 0:
                continue
        taken = conn.execute(
            "UPDATE messages SET owner = ?, lease_until = ?, deliveries = deliveries + 1, "
            "token = token + 1 WHERE id IN (SELECT id FROM messages WHERE queue = ? AND "
            "owner IS NULL AND ready_at <= ? ORDER BY ready_at, id LIMIT ?) "
            "RETURNING id, queue, message_id, body, deliveries, redelivered, token",
            (owner, lease_until, queue, now, left),
        ).fetchall()
        rows += sorted(taken)
    return rows, wake_at(conn, queues, now)


def _held_count(conn: sqlite3.Connection, queue: str, at_most: int) -> int:
    (held,) = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM messages WHERE queue = ? AND owner IS NOT NULL "
        "LIMIT ?)",
        (queue, at_most),
    ).fetchone()
    return int(held)


def wake_at(conn: sqlite3.Connection, queues: Sequence[str], now: float) -> float | None:
    """The Unix time the next delayed row comes due, or the next lease lapses."""
    marks = _marks(queues)
    due = conn.execute(
        f"SELECT min(ready_at) FROM messages WHERE queue IN ({marks}) AND owner IS NULL "
        "AND ready_at > ?",
        (*queues, now),
    ).fetchone()[0]
    lapse = conn.execute(
        f"SELECT min(lease_until) FROM messages WHERE queue IN ({marks}) AND owner IS NOT NULL",
        tuple(queues),
    ).fetchone()[0]
    return min((t for t in (due, lapse) if t is not None), default=None)


def ack(conn: sqlite3.Connection, held: Sequence[Held]) -> list[bool]:
    return [
        conn.execute("DELETE FROM messages WHERE id = ? AND owner = ? AND token = ?", h).rowcount
        == 1
        for h in held
    ]


def move_back(
    conn: sqlite3.Connection, held: Sequence[Held], now: float, *, counted: bool
) -> list[bool]:
    """Requeue (``counted``: it was a delivery, marked redelivered) or release
    (never started: not counted, its redelivered mark as it was)."""
    sql = (
        "UPDATE messages SET owner = NULL, lease_until = NULL, ready_at = ?, "
        + ("redelivered = 1 " if counted else "deliveries = max(deliveries - 1, 0) ")
        + "WHERE id = ? AND owner = ? AND token = ?"
    )
    return [conn.execute(sql, (now, *h)).rowcount == 1 for h in held]


def retry(conn: sqlite3.Connection, held: Held, body: bytes, ready_at: float) -> bool:
    """Replace the held row by a new one (the next attempt) in one step."""
    gone = conn.execute(
        "DELETE FROM messages WHERE id = ? AND owner = ? AND token = ? RETURNING queue, message_id",
        held,
    ).fetchone()
    if gone is None:
        return False
    publish(conn, [(gone[0], gone[1], body, ready_at)])
    return True


def dead_letter(conn: sqlite3.Connection, held: Held, letter: DeadLetter) -> bool:
    if (
        conn.execute("DELETE FROM messages WHERE id = ? AND owner = ? AND token = ?", held).rowcount
        != 1
    ):
        return False
    add_dead_letter(conn, letter)
    return True


def add_dead_letter(conn: sqlite3.Connection, letter: DeadLetter) -> None:
    conn.execute(
        "INSERT INTO dead_letters (queue, message_id, body, reason, detail, error, traceback, "
        "delivery_count, attempt, dead_lettered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            letter.queue,
            letter.message_id,
            letter.body,
            letter.reason,
            letter.detail,
            letter.error,
            letter.traceback,
            letter.delivery_count,
            letter.attempt,
            letter.dead_lettered_at,
        ),
    )


def extend(conn: sqlite3.Connection, held: Sequence[Held], lease_until: float) -> list[bool]:
    return [
        conn.execute(
            "UPDATE messages SET lease_until = ? WHERE id = ? AND owner = ? AND token = ?",
            (lease_until, *h),
        ).rowcount
        == 1
        for h in held
    ]


def stats(conn: sqlite3.Connection, queue: str, now: float) -> tuple[int, int, int, int]:
    """(ready, delayed, unacked, dead)."""
    ready, delayed, unacked = conn.execute(
        "SELECT coalesce(sum(owner IS NULL AND ready_at <= ?), 0), "
        "coalesce(sum(owner IS NULL AND ready_at > ?), 0), "
        "coalesce(sum(owner IS NOT NULL), 0) FROM messages WHERE queue = ?",
        (now, now, queue),
    ).fetchone()
    (dead,) = conn.execute("SELECT count(*) FROM dead_letters WHERE queue = ?", (queue,)).fetchone()
    return int(ready), int(delayed), int(unacked), int(dead)


def dead_letters(conn: sqlite3.Connection, queue: str, limit: int) -> list[DeadLetter]:
    rows = conn.execute(
        "SELECT message_id, body, reason, detail, error, traceback, delivery_count, attempt, "
        "dead_lettered_at FROM dead_letters WHERE queue = ? ORDER BY id LIMIT ?",
        (queue, limit),
    ).fetchall()
    return [
        DeadLetter(
            queue=queue,
            message_id=mid,
            body=bytes(body),
            reason=reason,
            detail=detail,
            error=error,
            traceback=tb,
            delivery_count=count,
            attempt=attempt,
            dead_lettered_at=at,
        )
        for mid, body, reason, detail, error, tb, count, attempt, at in rows
    ]


def delete(conn: sqlite3.Connection, queues: Sequence[str]) -> None:
    marks = _marks(queues)
    conn.execute(f"DELETE FROM messages WHERE queue IN ({marks})", tuple(queues))
    conn.execute(f"DELETE FROM dead_letters WHERE queue IN ({marks})", tuple(queues))


def data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection (process) commits: the cheap "anything new?"."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
