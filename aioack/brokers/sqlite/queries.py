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
from aioack.brokers.deadletters import letter_time, time_to_store

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
    if _waiting(conn, queue, max_length) + len(rows) > max_length:
        return False
    publish(conn, rows)
    return True


def _waiting(conn: sqlite3.Connection, queue: str, at_most: int) -> int:
    """Waiting rows (ready + delayed, not held) of ``queue``, counted up to ``at_most``."""
    (waiting,) = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM messages WHERE queue = ? AND owner IS NULL LIMIT ?)",
        (queue, at_most),
    ).fetchone()
    return int(waiting)


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
            time_to_store(letter.dead_lettered_at),
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


def last_letter(conn: sqlite3.Connection, queue: str) -> int:
    """The row id of the queue's newest dead letter (0: none): where a pass ends."""
    (last,) = conn.execute(
        "SELECT coalesce(max(id), 0) FROM dead_letters WHERE queue = ?", (queue,)
    ).fetchone()
    return int(last)


def letters(
    conn: sqlite3.Connection, queue: str, after: int, until: int, limit: int
) -> list[DeadLetter]:
    """Up to ``limit`` dead letters of ``queue`` with ``after < id <= until``, in order."""
    rows = conn.execute(
        "SELECT id, message_id, body, reason, detail, error, traceback, delivery_count, "
        "attempt, dead_lettered_at FROM dead_letters WHERE queue = ? AND id > ? AND id <= ? "
        "ORDER BY id LIMIT ?",
        (queue, after, until, limit),
    ).fetchall()
    return [
        DeadLetter(
            queue=queue,
            id=str(row_id),
            message_id=mid,
            body=bytes(body),
            reason=reason,
            detail=detail,
            error=error,
            traceback=tb,
            delivery_count=count,
            attempt=attempt,
            # Any process with the file open can write this column: checked.
            dead_lettered_at=letter_time(at),
        )
        for row_id, mid, body, reason, detail, error, tb, count, attempt, at in rows
    ]


def replay_letters(
    conn: sqlite3.Connection,
    queue: str,
    copies: Sequence[tuple[int, str, bytes]],
    now: float,
    max_length: int | None = None,
) -> tuple[int, bool]:
    """Each (row id, message id, body): delete the letter and insert its copy, ready
    at ``now``; a letter gone already gets no copy. Run as one transaction: the
    copies and the deletions commit together or not at all.

    A copy is new work: with a ``max_length``, each goes in only while the
    queue's waiting rows leave room (counted as ``publish_bounded`` counts,
    in this write transaction). The first copy without room stops it, its
    letter and the rest left as they are. Returns (letters moved, stopped full).
    """
    waiting = 0 if max_length is None else _waiting(conn, queue, max_length)
    moved = 0
    for row_id, message_id, body in copies:
        there = conn.execute(
            "SELECT 1 FROM dead_letters WHERE id = ? AND queue = ?", (row_id, queue)
        ).fetchone()
        if there is None:
            continue
        if max_length is not None and waiting >= max_length:
            return moved, True
        conn.execute("DELETE FROM dead_letters WHERE id = ?", (row_id,))
        publish(conn, [(queue, message_id, body, now)])
        moved += 1
        waiting += 1
    return moved, False


def remove_letters(conn: sqlite3.Connection, queue: str, row_ids: Sequence[int]) -> int:
    marks = _marks(row_ids)
    return conn.execute(
        f"DELETE FROM dead_letters WHERE queue = ? AND id IN ({marks})", (queue, *row_ids)
    ).rowcount


def has_queue(conn: sqlite3.Connection, queue: str) -> bool:
    """A queue exists once declared (consumed), and while it holds a message or a
    dead letter."""
    return bool(
        conn.execute(
            # One EXISTS per partial index of messages, so neither scans the table.
            "SELECT EXISTS (SELECT 1 FROM queues WHERE name = ?) "
            "OR EXISTS (SELECT 1 FROM messages WHERE queue = ? AND owner IS NULL) "
            "OR EXISTS (SELECT 1 FROM messages WHERE queue = ? AND owner IS NOT NULL) "
            "OR EXISTS (SELECT 1 FROM dead_letters WHERE queue = ?)",
            (queue, queue, queue, queue),
        ).fetchone()[0]
    )


def delete(conn: sqlite3.Connection, queues: Sequence[str]) -> None:
    marks = _marks(queues)
    conn.execute(f"DELETE FROM messages WHERE queue IN ({marks})", tuple(queues))
    conn.execute(f"DELETE FROM dead_letters WHERE queue IN ({marks})", tuple(queues))


def data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection (process) commits: the cheap "anything new?"."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def declare(conn: sqlite3.Connection, queues: Sequence[str]) -> None:
    conn.executemany("INSERT OR IGNORE INTO queues (name) VALUES (?)", [(q,) for q in queues])


def queues(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM queues UNION SELECT queue FROM messages "
        "UNION SELECT queue FROM dead_letters ORDER BY 1"
    ).fetchall()
    return [str(name) for (name,) in rows]


def announce(conn: sqlite3.Connection, worker_id: str, record: str, expires_at: float) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO workers (worker_id, record, expires_at) VALUES (?, ?, ?)",
        (worker_id, record, expires_at),
    )
    # Records of workers long gone: swept now and then, by whoever announces.
    conn.execute("DELETE FROM workers WHERE expires_at < ?", (expires_at - 3600,))


def retire(conn: sqlite3.Connection, worker_id: str) -> None:
    conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))


def workers(conn: sqlite3.Connection, now: float) -> list[str]:
    rows = conn.execute("SELECT record FROM workers WHERE expires_at > ?", (now,)).fetchall()
    return [str(record) for (record,) in rows]
