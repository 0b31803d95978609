"""SQLiteResultBackend: task states, results and the idempotency ledger in a local file.

- ``results``: one record (JSON) per task id, until ``expires_at``.
- ``idempotency``: one row per key: ``running`` (owner, lease ``until``)
  or ``done`` (the task id whose record holds the result, kept as long as
  results are). Claim, renew, complete and release each run as one
  transaction on the connection's thread (``aioack._sqlite``), so they are
  atomic across every process using the file.
- ``key_slots``: one row per run holding a concurrency slot (``slots.py``).
- ``chords`` and ``chord_members``: each chord's size and firing member, and
  one row per member that completed (``chords.py``).
- ``rate_limits``: each rate-limited key's GCRA state and booked tokens (``rates.py``).
- Waiting for a result reads the record again each ``poll_interval``
  (SQLite cannot notify another process); a wait on a task of this process
  wakes at once.

``ctx.effect()`` is not offered here (it needs Redis transactions); the
base class says so with a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aioack._sqlite import Migrations, SQLiteIO, ensure_schema, resolve_path, url_path
from aioack.results.base import (
    CHORD_COUNT_KEEP_FACTOR,
    DEFAULT_RESULT_EXPIRES_S,
    Claim,
    ClaimStatus,
    ResultBackend,
    ResultRecord,
    Revocation,
    ScheduleState,
)
from aioack.results.sqlite import chords, rates, revocations, schedules, slots, unique
from aioack.urls import parse_options

SCHEMA_VERSION = 3
_CREATE = (
    "CREATE TABLE results (task_id TEXT PRIMARY KEY, record TEXT NOT NULL, "
    "expires_at REAL NOT NULL)",
    "CREATE INDEX results_expiry ON results (expires_at)",
    "CREATE TABLE idempotency (key TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT NOT NULL, "
    "task_id TEXT NOT NULL, until REAL NOT NULL)",
)
#: Version 2: task control (docs/task-control.md). ``revocations`` is a log
#: workers tail by ``seq``; ``unique_keys`` one row per unique-enqueue key;
#: ``key_slots`` one row per (key, owner) holding a concurrency slot.
_V2 = (
    "CREATE TABLE revocations (seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, "
    "terminate INTEGER NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE unique_keys (key TEXT PRIMARY KEY, task_id TEXT NOT NULL, "
    "expires_at REAL NOT NULL)",
    "CREATE TABLE key_slots (key TEXT NOT NULL, owner TEXT NOT NULL, until REAL NOT NULL, "
    "PRIMARY KEY (key, owner))",
)


#: Version 3: schedules and workflows (docs/periodic.md, docs/workflows.md).
#: ``schedules``: each periodic schedule's last and next fire (for inspect);
#: ``chord_members``: the members of a chord that completed (one row each, so
#: a duplicate delivery counts once), ``chords`` each chord's size and whether
#: its callback was published; ``rate_limits``: one GCRA state per limited key.
_V3 = (
    "CREATE TABLE schedules (name TEXT PRIMARY KEY, last_fire REAL, next_fire REAL, "
    "updated_at REAL NOT NULL)",
    "CREATE TABLE chords (chord_id TEXT PRIMARY KEY, size INTEGER NOT NULL, "
    "fired_by TEXT, expires_at REAL NOT NULL)",
    "CREATE TABLE chord_members (chord_id TEXT NOT NULL, member_id TEXT NOT NULL, "
    "PRIMARY KEY (chord_id, member_id))",
    "CREATE TABLE rate_limits (key TEXT PRIMARY KEY, tat REAL NOT NULL)",
)


def _v2(conn: sqlite3.Connection) -> None:
    for statement in _V2:
        conn.execute(statement)


def _v3(conn: sqlite3.Connection) -> None:
    for statement in _V3:
        conn.execute(statement)


#: From version N to N + 1. A new version adds its step here (and to _create).
MIGRATIONS: Migrations = {1: _v2, 2: _v3}
#: Stores between two sweeps of expired records.
_SWEEP_EVERY = 200


class SQLiteResultOptions(BaseModel):
    """Options of the SQLite result backend (URL query or keyword arguments). Seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Seconds a record and a completed idempotency key are kept.
    result_expires: float = Field(default=DEFAULT_RESULT_EXPIRES_S, gt=0)
    #: How often ``result.get()`` reads a record that is not final yet.
    poll_interval: float = Field(default=0.05, gt=0, le=5)
    busy_timeout: float = Field(default=5.0, gt=0)
    synchronous: Literal["full", "normal"] = "full"


def _create(conn: sqlite3.Connection) -> None:
    for statement in _CREATE:
        conn.execute(statement)
    _v2(conn)
    _v3(conn)


def _ensure(conn: sqlite3.Connection) -> None:
    ensure_schema(conn, "results", SCHEMA_VERSION, _create, MIGRATIONS)


class SQLiteResultBackend(ResultBackend):
    """``SQLiteResultBackend.from_url("sqlite:///app.db?result_expires=3600")``."""

    def __init__(self, url: str = "sqlite://", **options: Any) -> None:
        _, self.options = parse_options(url, options, SQLiteResultOptions, what="SQLite results")
        self._path = url_path(url)
        self.result_expires_s = self.options.result_expires
        self._io: SQLiteIO | None = None
        self._stores = 0
        self._reserves = 0
        self._chord_counts = 0
        self._rate_reserves = 0
        #: task id -> the events of this process's waiters, set on a final store.
        self._final: dict[str, set[asyncio.Event]] = {}
        #: Set when this process adds a revocation: its own readers wake at once.
        self._revoked = asyncio.Event()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteResultBackend:
        """Build from ``sqlite://``, ``sqlite:///relative.db`` or ``sqlite:////abs.db``.

        Raises:
            ConfigurationError: an unknown option (with the closest name), a host.
        """
        return cls(url, **options)

    @property
    def location(self) -> str:
        return f"sqlite:///{self._io.path if self._io is not None else self._path}"

    async def connect(self) -> None:
        if self._io is not None and self._io.started:
            return
        opts = self.options
        self._io = SQLiteIO(
            resolve_path(self._path),
            busy_timeout_s=opts.busy_timeout,
            synchronous=opts.synchronous,
            setup=_ensure,
            name="sqlite-results",
        )
        await self._io.start()

    async def aclose(self) -> None:
        io, self._io = self._io, None
        if io is not None:
            await io.aclose()

    async def _run(self, fn: Any, *, write: bool = True) -> Any:
        if self._io is None:
            await self.connect()
        assert self._io is not None
        return await self._io.run(fn, write=write)

    # -- records -------------------------------------------------------------

    async def store(self, record: ResultRecord) -> None:
        self._stores += 1
        sweep = self._stores % _SWEEP_EVERY == 0
        await self._run(
            functools.partial(
                _store,
                record=record.model_dump_json(),
                task_id=record.task_id,
                expires_at=time.time() + self.result_expires_s,
                sweep=sweep,
            )
        )
        if record.state.is_final:
            self._wake(record.task_id)

    async def fetch(self, task_id: str) -> ResultRecord | None:
        raw = await self._run(
            functools.partial(_fetch, task_id=task_id, now=time.time()), write=False
        )
        return None if raw is None else ResultRecord.model_validate_json(raw)

    async def wait(self, task_id: str, timeout_s: float | None) -> ResultRecord | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        stored = asyncio.Event()  # this waiter's: a store in this process sets it
        self._final.setdefault(task_id, set()).add(stored)
        try:
            while True:
                record = await self.fetch(task_id)
                if record is not None and record.state.is_final:
                    return record
                wait_s = self.options.poll_interval
                if deadline is not None:
                    remaining_s = deadline - time.monotonic()
                    if remaining_s <= 0:
                        return None
                    wait_s = min(wait_s, remaining_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stored.wait(), wait_s)
                stored.clear()
        finally:
            waiters = self._final.get(task_id, set())
            waiters.discard(stored)
            if not waiters:
                self._final.pop(task_id, None)

    def _wake(self, task_id: str) -> None:
        for stored in self._final.get(task_id, ()):
            stored.set()

    # -- revocations -------------------------------------------------------------

    async def revoke(self, items: Sequence[Revocation]) -> None:
        await self._run(functools.partial(revocations.add, items=items, now=time.time()))
        self._revoked.set()

    async def revocations_after(
        self, cursor: str | None, wait_s: float
    ) -> tuple[list[Revocation], str]:
        deadline = time.monotonic() + wait_s
        position = None if cursor is None else int(cursor)
        while True:
            self._revoked.clear()
            found, last = await self._run(
                functools.partial(revocations.read_after, cursor=position, now=time.time()),
                write=False,
            )
            remaining_s = deadline - time.monotonic()
            if found or last != position or remaining_s <= 0:
                return found, str(last)
            with contextlib.suppress(TimeoutError):
                wait = min(self.options.poll_interval, remaining_s)
                await asyncio.wait_for(self._revoked.wait(), wait)

    # -- the idempotency ledger ------------------------------------------------

    async def claim(self, key: str, owner: str, task_id: str, lease_s: float) -> Claim:
        status, completed_by = await self._run(
            functools.partial(
                _claim, key=key, owner=owner, task_id=task_id, now=time.time(), lease_s=lease_s
            )
        )
        return Claim(ClaimStatus(status), completed_by)

    async def renew(self, key: str, owner: str, task_id: str, lease_s: float) -> bool:
        renewed: bool = await self._run(
            functools.partial(
                _renew, key=key, owner=owner, task_id=task_id, now=time.time(), lease_s=lease_s
            )
        )
        return renewed

    async def complete(self, key: str, owner: str, record: ResultRecord) -> None:
        now = time.time()
        await self._run(
            functools.partial(
                _complete,
                key=key,
                owner=owner,
                task_id=record.task_id,
                record=record.model_dump_json(),
                now=now,
                until=now + self.result_expires_s,
            )
        )
        self._wake(record.task_id)

    async def release(self, key: str, owner: str) -> None:
        await self._run(functools.partial(_release, key=key, owner=owner))

    # -- unique enqueue (aioack/results/sqlite/unique.py) -----------------------

    async def reserve_unique(self, key: str, task_id: str, ttl_s: float) -> str | None:
        self._reserves += 1
        holder: str | None = await self._run(
            functools.partial(
                unique.reserve,
                key=key,
                task_id=task_id,
                now=time.time(),
                ttl_s=ttl_s,
                sweep=self._reserves % _SWEEP_EVERY == 0,
            )
        )
        return holder

    async def unreserve_unique(self, key: str, task_id: str) -> None:
        await self._run(functools.partial(unique.unreserve, key=key, task_id=task_id))

    # -- concurrency slots (slots.py) --------------------------------------------

    async def acquire_slot(self, key: str, limit: int, owner: str, lease_s: float) -> bool:
        taken: bool = await self._run(
            functools.partial(
                slots.acquire, key=key, limit=limit, owner=owner, now=time.time(), lease_s=lease_s
            )
        )
        return taken

    async def renew_slot(self, key: str, owner: str, lease_s: float) -> bool:
        renewed: bool = await self._run(
            functools.partial(slots.renew, key=key, owner=owner, now=time.time(), lease_s=lease_s)
        )
        return renewed

    async def release_slot(self, key: str, owner: str) -> None:
        await self._run(functools.partial(slots.release, key=key, owner=owner))

    # -- chords (chords.py) ---------------------------------------------------------

    async def chord_member_done(self, chord_id: str, member_id: str, size: int) -> bool:
        self._chord_counts += 1
        fires: bool = await self._run(
            functools.partial(
                chords.member_done,
                chord_id=chord_id,
                member_id=member_id,
                size=size,
                now=time.time(),
                keep_s=CHORD_COUNT_KEEP_FACTOR * self.result_expires_s,
                sweep=self._chord_counts % _SWEEP_EVERY == 0,
            )
        )
        return fires

    # -- rate limits (rates.py) ----------------------------------------------------

    async def reserve_rate(self, key: str, ticket: str, interval_s: float, late_s: float) -> float:
        self._rate_reserves += 1
        wait_s: float = await self._run(
            functools.partial(
                rates.reserve,
                key=key,
                ticket=ticket,
                interval_s=interval_s,
                late_s=late_s,
                sweep_too=self._rate_reserves % _SWEEP_EVERY == 0,
            )
        )
        return wait_s

    # -- periodic schedules (schedules.py) ----------------------------------------

    async def record_schedule(
        self,
        name: str,
        *,
        fired: float | None,
        next_fire: float | None,
        distrust_after: float | None = None,
    ) -> None:
        await self._run(
            functools.partial(
                schedules.record,
                name=name,
                fired=fired,
                next_fire=next_fire,
                now=time.time(),
                distrust_after=distrust_after,
            )
        )

    async def schedule_states(self, names: Sequence[str] | None = None) -> dict[str, ScheduleState]:
        found: dict[str, ScheduleState] = await self._run(
            functools.partial(schedules.states, names=names), write=False
        )
        return found


# -- statements, run on the connection's thread ------------------------------------


def _store(
    conn: sqlite3.Connection, *, record: str, task_id: str, expires_at: float, sweep: bool
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO results (task_id, record, expires_at) VALUES (?, ?, ?)",
        (task_id, record, expires_at),
    )
    if sweep:  # now and then: expired records and keys go, a few hundred at a time
        now = time.time()
        conn.execute(
            "DELETE FROM results WHERE rowid IN "
            "(SELECT rowid FROM results WHERE expires_at < ? LIMIT 500)",
            (now,),
        )
        conn.execute(
            "DELETE FROM idempotency WHERE rowid IN "
            "(SELECT rowid FROM idempotency WHERE until < ? LIMIT 500)",
            (now,),
        )


def _fetch(conn: sqlite3.Connection, *, task_id: str, now: float) -> str | None:
    row = conn.execute(
        "SELECT record FROM results WHERE task_id = ? AND expires_at > ?", (task_id, now)
    ).fetchone()
    return None if row is None else str(row[0])


def _claim(
    conn: sqlite3.Connection, *, key: str, owner: str, task_id: str, now: float, lease_s: float
) -> tuple[str, str | None]:
    row = conn.execute(
        "SELECT state, owner, task_id FROM idempotency WHERE key = ? AND until > ?", (key, now)
    ).fetchone()
    if row is not None:
        state, holder, holder_task = row
        if state == "done":
            return ClaimStatus.COMPLETED.value, holder_task
        if holder != owner:
            return ClaimStatus.BUSY.value, None
    conn.execute(
        "INSERT OR REPLACE INTO idempotency (key, state, owner, task_id, until) "
        "VALUES (?, 'running', ?, ?, ?)",
        (key, owner, task_id, now + lease_s),
    )
    return ClaimStatus.CLAIMED.value, None


def _renew(
    conn: sqlite3.Connection, *, key: str, owner: str, task_id: str, now: float, lease_s: float
) -> bool:
    row = conn.execute(
        "SELECT state, owner FROM idempotency WHERE key = ? AND until > ?", (key, now)
    ).fetchone()
    if row is not None and (row[0] != "running" or row[1] != owner):
        return False  # another run took it over, or a run completed it
    # Held by us, or lapsed with nobody taking it over: still this run's to hold.
    conn.execute(
        "INSERT OR REPLACE INTO idempotency (key, state, owner, task_id, until) "
        "VALUES (?, 'running', ?, ?, ?)",
        (key, owner, task_id, now + lease_s),
    )
    return True


def _complete(
    conn: sqlite3.Connection,
    *,
    key: str,
    owner: str,
    task_id: str,
    record: str,
    now: float,
    until: float,
) -> None:
    """The first completion wins: a late run stores its own record, not the key."""
    done = conn.execute(
        "SELECT 1 FROM idempotency WHERE key = ? AND state = 'done' AND until > ?", (key, now)
    ).fetchone()
    if done is None:
        conn.execute(
            "INSERT OR REPLACE INTO idempotency (key, state, owner, task_id, until) "
            "VALUES (?, 'done', ?, ?, ?)",
            (key, owner, task_id, until),
        )
    conn.execute(
        "INSERT OR REPLACE INTO results (task_id, record, expires_at) VALUES (?, ?, ?)",
        (task_id, record, until),
    )


def _release(conn: sqlite3.Connection, *, key: str, owner: str) -> None:
    conn.execute(
        "DELETE FROM idempotency WHERE key = ? AND state = 'running' AND owner = ?", (key, owner)
    )
