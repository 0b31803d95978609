"""The schema is versioned per component, migrated step by step, never downgraded."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from aioack._sqlite import ensure_schema
from aioack.brokers import MemoryBroker
from aioack.errors import ConfigurationError


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE things (id INTEGER PRIMARY KEY)")


def test_an_older_schema_is_migrated_step_by_step_in_one_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    ensure_schema(conn, "demo", 1, _create_v1, {})
    conn.execute("INSERT INTO things VALUES (1)")
    steps: list[int] = []

    def to_2(c: sqlite3.Connection) -> None:
        steps.append(1)
        c.execute("ALTER TABLE things ADD COLUMN name TEXT DEFAULT 'x'")

    def to_3(c: sqlite3.Connection) -> None:
        steps.append(2)
        c.execute("CREATE INDEX things_name ON things (name)")

    ensure_schema(conn, "demo", 3, _create_v1, {1: to_2, 2: to_3})
    assert steps == [1, 2]
    assert conn.execute("SELECT id, name FROM things").fetchall() == [(1, "x")]
    assert conn.execute("SELECT value FROM aioack_meta WHERE key = 'demo_schema'").fetchone() == (
        "3",
    )


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    ensure_schema(conn, "demo", 1, _create_v1, {})

    def broken(c: sqlite3.Connection) -> None:
        c.execute("ALTER TABLE things ADD COLUMN name TEXT")
        raise RuntimeError("a bug in a migration")

    with pytest.raises(RuntimeError):
        ensure_schema(conn, "demo", 2, _create_v1, {1: broken})
    columns = [row[1] for row in conn.execute("PRAGMA table_info(things)")]
    assert columns == ["id"], "the half-done migration was rolled back"
    version = conn.execute("SELECT value FROM aioack_meta WHERE key = 'demo_schema'").fetchone()
    assert version == ("1",)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    ensure_schema(conn, "demo", 5, _create_v1, {n: lambda c: None for n in range(1, 5)})
    with pytest.raises(ConfigurationError, match="schema version 5, newer than this aioack"):
        ensure_schema(conn, "demo", 4, _create_v1, {})


async def test_a_memory_broker_closed_holding_messages_says_they_are_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An embedded worker on memory:// stopping with work left used to exit quietly.
    broker = MemoryBroker()
    await broker.connect()
    await broker.publish("q", b"x", message_id="m1")
    await broker.publish("q", b"y", message_id="m2", delay_s=60)
    with caplog.at_level(logging.WARNING, logger="aioack.brokers.memory"):
        await broker.aclose()
    assert "closed holding 2 messages: they are lost" in caplog.text


async def test_a_file_made_at_version_1_is_migrated_with_its_messages(tmp_path: Path) -> None:
    from aioack.brokers.sqlite import SQLiteBroker, schema

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE aioack_meta (key TEXT PRIMARY KEY, value TEXT)")
    schema._run(conn, schema._CREATE)  # the version-1 tables, as 0.1 made them
    conn.execute("INSERT INTO aioack_meta VALUES ('broker_schema', '1')")
    conn.execute(
        "INSERT INTO messages (queue, message_id, body, ready_at) VALUES ('old', 'm1', x'00', 0)"
    )
    conn.close()
    async with SQLiteBroker.from_url(f"sqlite:///{path}") as broker:
        assert (await broker.stats("old")).ready == 1, "the message survived the migration"
        assert await broker.queues() == ["old"]
        assert await broker.workers() == []
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM aioack_meta WHERE key = 'broker_schema'").fetchone() == (
        "2",
    )
