"""SQLite off the event loop: one connection on a thread of its own, writes group-committed.

Shared by the SQLite broker and the SQLite result backend. Why a dedicated
thread and not a wrapper such as aiosqlite: every write an event-loop turn
queues (the acks of many runs, a claim, a lease renewal) goes into ONE
transaction and ONE commit, so the fsync a durable commit costs (about
0.2 ms here with ``synchronous=FULL``) is paid per round, not per task. A
wrapper runs each call as its own transaction. The standard library's
sqlite3 releases the GIL inside SQLite, so the loop keeps running meanwhile.

An operation is a plain function ``op(connection) -> result`` run on that
thread. Writes run inside ``BEGIN IMMEDIATE`` ... ``COMMIT``; each write
that is not a single statement gets a savepoint, so one that fails changes
nothing and the others still commit. A write's result is handed back only
after the commit: a caller never sees a change that could still be lost.
A queued operation runs even if its caller was cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aioack.errors import BrokerError, BrokerUnavailable, ConfigurationError

logger = logging.getLogger("aioack.sqlite")

T = TypeVar("T")

#: Operations one transaction takes at most (the rest wait for the next round).
MAX_BATCH = 1000


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    write: bool
    atomic: bool
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop = field(repr=False)


_STOP = object()


#: The file ``sqlite://`` (no path) names: in the current directory, so a
#: producer and a worker started from one project directory share it.
DEFAULT_FILE = "aioack.db"


def url_path(url: str) -> str:
    """The database file a URL names (``sqlite:///relative.db``, ``sqlite:////abs.db``,
    or ``sqlite://`` for DEFAULT_FILE), not yet resolved.

    Raises:
        ConfigurationError: a host in the URL, or an in-memory database.
    """
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigurationError(
            f"SQLite URL {url!r} names a host ({parts.netloc!r}): SQLite is a local file; "
            "write sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    path = (parts.path[1:] if parts.path.startswith("/") else parts.path) or DEFAULT_FILE
    if path == ":memory:":
        raise ConfigurationError(
            "an in-memory SQLite database is one process's only; use memory:// for that"
        )
    return path


def resolve_path(path: str) -> Path:
    """The database file as an absolute path; its directory must exist and be writable.

    Raises:
        ConfigurationError: the directory is missing or not writable.
    """
    file = Path(path).expanduser().resolve()
    directory = file.parent
    if not directory.is_dir():
        raise ConfigurationError(
            f"SQLite: the directory {str(directory)!r} of {str(file)!r} does not exist; "
            "create it, or point the URL elsewhere (sqlite:////absolute/path.db)"
        )
    if not _writable(directory):
        raise ConfigurationError(
            f"SQLite: the directory {str(directory)!r} is not writable (the database needs "
            "its -wal and -shm files beside it); choose a writable directory"
        )
    return file


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


class SQLiteIO:
    """One sqlite3 connection, owned by one thread; ``await io.run(op)`` from the loop."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float,
        synchronous: str,
        setup: Callable[[sqlite3.Connection], None],
        name: str,
    ) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous
        self._setup = setup
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: Set by aclose(): the thread resolves it once the connection is closed.
        self._closed: asyncio.Future[None] | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        """Open the connection on its thread and run ``setup`` (schema checks).

        Raises:
            ConfigurationError: not a database, a newer schema, an unusable path.
            BrokerUnavailable: the file is locked past the busy timeout.
        """
        if self.started:
            return
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._serve, args=(loop, opened), name=f"aioack-{self._name}", daemon=True
        )
        self._thread.start()
        try:
            await opened
        except BaseException:
            await self.aclose()
            raise

    async def run(
        self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True, atomic: bool = True
    ) -> T:
        """Run ``fn(connection)`` on the connection's thread; its result once committed.

        ``atomic=False`` marks a write that is a single statement (atomic by
        itself), which saves it a savepoint.

        Raises:
            BrokerUnavailable: not started, the file locked past the busy timeout,
                the disk full, an I/O error. Nothing of the operation was committed.
            BrokerError: SQLite refused the operation otherwise.
        """
        if not self.started:
            raise BrokerUnavailable(f"SQLite {self._name} is not connected; call connect() first")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Op(fn, write, atomic, future, loop))
        return await future

    async def aclose(self) -> None:
        """Finish what is queued, close the connection, end the thread (bounded)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        # The thread says when it has closed the file, rather than being joined
        # in an executor thread: at interpreter exit (the sync API closes then)
        # Python refuses to start a new executor thread.
        closed = self._closed = asyncio.get_running_loop().create_future()
        self._queue.put(_STOP)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(closed), 5.0)
        if thread.is_alive() and not closed.done():
            logger.error("SQLite %s: its thread did not end within 5 s", self._name)

    # -- the thread ----------------------------------------------------------

    def _serve(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        try:
            conn = self._open()
        except BaseException as exc:
            loop.call_soon_threadsafe(_fail, opened, _translated(exc, "open"))
            return
        loop.call_soon_threadsafe(_succeed, opened, None)
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < MAX_BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                stop = _STOP in batch
                ops = [op for op in batch if op is not _STOP]
                self._run_reads([op for op in ops if not op.write], conn)
                self._run_writes([op for op in ops if op.write], conn)
                if stop:
                    break
        finally:
            conn.close()
            closed = self._closed
            if closed is not None:
                with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                    closed.get_loop().call_soon_threadsafe(_succeed, closed, None)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=True
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            mode = self._wal_mode(conn)
            if mode != "wal":
                raise ConfigurationError(
                    f"SQLite could not use WAL mode for {str(self.path)!r} (got {mode!r}): "
                    "is it on a network filesystem? Use a local disk"
                )
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            self._setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _wal_mode(self, conn: sqlite3.Connection) -> str:
        """Switch the file to WAL (once: the mode is kept in the file); the mode it is in.

        The switch takes an exclusive lock without calling the busy handler: two
        processes opening a new file together (a worker, and ``inspect``) make one
        of them fail at once with "database is locked". So it is retried here, up
        to ``busy_timeout``, as every other lock wait is.
        """
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if mode == "wal":
                    return mode
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _run_reads(self, ops: list[_Op], conn: sqlite3.Connection) -> None:
        for op in ops:
            try:
                result = op.fn(conn)
            except BaseException as exc:
                op.loop.call_soon_threadsafe(_fail, op.future, _translated(exc, "read"))
            else:
                op.loop.call_soon_threadsafe(_succeed, op.future, result)

    def _run_writes(self, ops: list[_Op], conn: sqlite3.Connection) -> None:
        if not ops:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # locked past the busy timeout, I/O error
            error = _translated(exc, "begin a transaction")
            for op in ops:
                op.loop.call_soon_threadsafe(_fail, op.future, error)
            return
        outcomes: list[tuple[bool, Any]] = []
        for op in ops:
            outcomes.append(self._run_one(op, conn))
            if not conn.in_transaction:
                # SQLite rolled the whole transaction back itself (a full disk, an
                # I/O error): nothing of this round was written, so no op succeeded.
                error = outcomes[-1][1]
                for failed in ops:
                    failed.loop.call_soon_threadsafe(_fail, failed.future, error)
                return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # disk full, I/O error: nothing was written
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = _translated(exc, "commit")
            outcomes = [(False, error)] * len(ops)
        for op, (ok, value) in zip(ops, outcomes, strict=True):
            op.loop.call_soon_threadsafe(_succeed if ok else _fail, op.future, value)

    @staticmethod
    def _run_one(op: _Op, conn: sqlite3.Connection) -> tuple[bool, Any]:
        if op.atomic:
            conn.execute("SAVEPOINT op")
        try:
            result = op.fn(conn)
        except BaseException as exc:
            if op.atomic and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # gone with a rolled-back transaction
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
            return False, _translated(exc, "write")
        if op.atomic:
            conn.execute("RELEASE op")
        return True, result


def _succeed(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _translated(exc: BaseException, what: str) -> BaseException:
    """sqlite3's exceptions as aioack's (the original is the ``__cause__``)."""
    if isinstance(exc, BrokerError | ConfigurationError):
        return exc
    text = str(exc)
    error: BaseException
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        error = BrokerUnavailable(f"SQLite {what}: the database stayed locked past busy_timeout")
    elif isinstance(exc, sqlite3.OperationalError) and "full" in text:
        error = BrokerUnavailable(f"SQLite {what}: the disk is full ({text}); nothing was written")
    elif isinstance(exc, sqlite3.OperationalError) and ("unable to open" in text or "I/O" in text):
        error = BrokerUnavailable(f"SQLite {what}: {text}")
    elif isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        error = ConfigurationError(
            f"SQLite {what}: the file is not an SQLite database ({text}); point the URL at "
            "another file"
        )
    elif isinstance(exc, sqlite3.Error):
        error = BrokerError(f"SQLite {what}: {type(exc).__name__}: {text}")
    else:
        return exc  # a bug in an operation: raised as it is, to its caller
    error.__cause__ = exc
    return error


#: Migrations of one component's tables: from version N (the key) to N + 1.
Migrations = dict[int, Callable[[sqlite3.Connection], None]]


def ensure_schema(
    conn: sqlite3.Connection,
    component: str,
    version: int,
    create: Callable[[sqlite3.Connection], None],
    migrations: Migrations,
) -> None:
    """Create ``component``'s tables at ``version``, or migrate them there step by step,
    in one transaction.

    The version is kept in ``aioack_meta`` under ``<component>_schema``.

    Raises:
        ConfigurationError: the file has a newer schema than this aioack knows.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS aioack_meta (key TEXT PRIMARY KEY, value TEXT)")
        key = f"{component}_schema"
        row = conn.execute("SELECT value FROM aioack_meta WHERE key = ?", (key,)).fetchone()
        found = int(row[0]) if row else 0
        if found > version:
            raise ConfigurationError(
                f"SQLite: the {component} tables in this file have schema version {found}, "
                f"newer than this aioack knows ({version}): upgrade aioack, or use another file"
            )
        if found == 0:
            create(conn)  # a new file: made at the current version
        else:
            for step in range(found, version):
                migrations[step](conn)
        conn.execute("INSERT OR REPLACE INTO aioack_meta VALUES (?, ?)", (key, str(version)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
