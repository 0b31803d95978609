"""The SQLite broker's tables, versioned (``aioack_meta.broker_schema``).

``messages``: one row per message, ready, delayed, or held by a consumer.

- ``ready_at``: Unix time it may be delivered (later: a delay, held in the file).
- ``owner``, ``lease_until``: the consumer holding it, and until when; NULL
  when not held. A lease that ran out makes the row claimable again.
- ``token``: raised on every claim. A settle must name (id, owner, token):
  a consumer whose lease lapsed and was taken over can never settle it.
- ``deliveries``: claims counted (a release, never started, is not).
- ``redelivered``: it was handed out before and came back unsettled.

``dead_letters``: messages removed for good, with why.

``queues`` (version 2): every queue declared, so an empty one is still known.
``workers`` (version 2): each live worker's record (JSON) until ``expires_at``.
"""

from __future__ import annotations

import sqlite3

from aioack._sqlite import Migrations, ensure_schema

VERSION = 2

_CREATE = """
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    ready_at REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    redelivered INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until REAL,
    token INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_claimable ON messages (queue, ready_at, id) WHERE owner IS NULL;
CREATE INDEX messages_held ON messages (queue, lease_until) WHERE owner IS NOT NULL;
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    error TEXT,
    traceback TEXT,
    delivery_count INTEGER NOT NULL,
    attempt INTEGER,
    dead_lettered_at REAL NOT NULL
);
CREATE INDEX dead_letters_by_queue ON dead_letters (queue, id);
"""

_V2 = """
CREATE TABLE queues (name TEXT PRIMARY KEY);
CREATE TABLE workers (worker_id TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at REAL NOT NULL);
INSERT OR IGNORE INTO queues SELECT DISTINCT queue FROM messages;
INSERT OR IGNORE INTO queues SELECT DISTINCT queue FROM dead_letters;
"""


def _run(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _create(conn: sqlite3.Connection) -> None:
    _run(conn, _CREATE)
    _run(conn, _V2)


#: From version N to N + 1. A new version adds its step here (and to _create).
MIGRATIONS: Migrations = {1: lambda conn: _run(conn, _V2)}


def ensure(conn: sqlite3.Connection) -> None:
    ensure_schema(conn, "broker", VERSION, _create, MIGRATIONS)
