"""Bad conditions on the SQLite broker: a clear error at start or a retried
operation, never a lost or half-written message.

What is counted is messages in the file: every publish that returned is
there, the one that failed is not, nothing is half there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioack import App, BrokerUnavailable, ConfigurationError, PublishFailed
from aioack.brokers.sqlite import SQLiteBroker
from tests.support import wait_until


def broker_at(path: Path, **options: object) -> SQLiteBroker:
    return SQLiteBroker.from_url(f"sqlite:///{path}", **options)


async def test_a_missing_directory_is_a_clear_error_at_start(tmp_path: Path) -> None:
    broker = broker_at(tmp_path / "no" / "such" / "dir" / "q.db")
    with pytest.raises(ConfigurationError, match="does not exist; create it"):
        await broker.connect()


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "ro"
    directory.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits; an immutable directory it cannot
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a read-only directory")
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    else:
        directory.chmod(0o555)
    yield directory
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o755)


async def test_a_directory_that_is_not_writable_is_a_clear_error_at_start(
    read_only_dir: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="not writable"):
        await broker_at(read_only_dir / "q.db").connect()


async def test_a_file_that_is_not_a_database_is_a_clear_error_and_is_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    with pytest.raises(ConfigurationError, match="not an SQLite database"):
        await broker_at(path).connect()
    assert path.read_bytes().startswith(b"these are my notes"), "the file was not touched"


async def test_a_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with broker_at(path):
        pass  # made at version 1
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE aioack_meta SET value = '99' WHERE key = 'broker_schema'")
    with pytest.raises(ConfigurationError, match=r"schema version 99.*upgrade aioack"):
        await broker_at(path).connect()


async def test_opening_a_new_file_another_process_is_setting_up_waits_for_it(
    tmp_path: Path,
) -> None:
    # Seen as a worker and `inspect` started together on a new file: one failed at
    # once with "database is locked", as switching to WAL does not wait on a lock.
    path = tmp_path / "q.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # still in the rollback journal: setting up the file
    other.execute("CREATE TABLE setting_up (x)")
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, other.execute, "COMMIT")
    try:
        async with broker_at(path, busy_timeout=5) as broker:
            await broker.publish("q", b"x", message_id="m")
            assert (await broker.stats("q")).ready == 1
    finally:
        other.close()


async def test_a_database_locked_past_the_busy_timeout_fails_the_publish_then_recovers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.db"
    broker = broker_at(path, busy_timeout=0.2)
    async with broker:
        await broker.publish("q", b"before", message_id="before")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(BrokerUnavailable, match="locked past busy_timeout"):
                await broker.publish("q", b"during", message_id="during")
        finally:
            other.execute("ROLLBACK")
            other.close()
        await broker.publish("q", b"after", message_id="after")
        assert (await broker.stats("q")).ready == 2  # before and after; during never written


async def test_a_worker_rides_out_a_lock_on_its_settles_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    broker = broker_at(path, busy_timeout=0.1)
    app, done = App(broker=broker), []

    @app.task(queue="q")
    async def work(n: int) -> None:
        done.append(n)

    async with app, app.worker(["q"], concurrency=4):  # started: the lock hits its claims
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(BrokerUnavailable):
            await work.delay(-1)  # the lock is real: a publish fails meanwhile
        # Held past several busy timeouts: the worker's claims and acks fail
        # and are retried (with backoff) until the lock goes.
        asyncio.get_running_loop().call_later(0.6, lambda: (other.rollback(), other.close()))
        for n in range(20):
            while True:
                try:
                    await work.delay(n)
                    break
                except BrokerUnavailable:
                    await asyncio.sleep(0.05)
        await wait_until(lambda: len(done) >= 20, timeout=15, message="all 20 ran")
    assert sorted(done) == list(range(20))
    async with broker_at(path) as check:
        assert (await check.stats("q")).pending == 0


async def test_a_full_disk_fails_the_publish_that_does_not_fit_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.db"
    broker = broker_at(path)
    stored = 0
    async with broker:
        # SQLite's own limit on the file's size: it reports SQLITE_FULL, as a full disk does.
        await broker._running().run(lambda conn: conn.execute("PRAGMA max_page_count = 60"))
        with pytest.raises((BrokerUnavailable, PublishFailed), match="full"):
            for n in range(1000):
                await broker.publish("q", b"x" * 4000, message_id=f"m{n}")
                stored += 1
        assert 0 < stored < 1000
        stats = await broker.stats("q")
        assert stats.ready == stored, "every publish that returned is there, no other"
        consumer = await broker.consume(["q"], prefetch=1)
        delivery = await consumer.get(1.0)
        assert delivery is not None and delivery.body == b"x" * 4000, "whole, not half written"
        await broker.ack(delivery)  # a delete still works on a full disk: room comes back
        await consumer.close()
        await broker.publish("q", b"y", message_id="fits-again")
