"""MemoryResultBackend: the in-process twin, for tests and the embedded broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aioack.results.base import (
    CHORD_COUNT_KEEP_FACTOR,
    DEFAULT_RESULT_EXPIRES_S,
    Claim,
    ClaimStatus,
    ResultBackend,
    ResultRecord,
    Revocation,
    ScheduleState,
    tick_ms,
)
from aioack.results.rates import step
from aioack.results.revocations import live
from aioack.urls import parse_options


class _MemoryResultOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    result_expires: float = Field(default=DEFAULT_RESULT_EXPIRES_S, gt=0)


#: Unique-enqueue reserves between two sweeps of keys whose window ended.
_SWEEP_UNIQUE_EVERY = 1000


@dataclass(slots=True)
class _Key:
    owner: str
    task_id: str
    #: Monotonic deadline of the claim's lease, or of the completed mark.
    until: float
    done: bool = False


@dataclass(slots=True)
class _Chord:
    size: int
    until: float
    done: set[str]
    fired_by: str | None = None


class MemoryResultBackend(ResultBackend):
    """Keeps records in a dict; waiters sleep on one ``asyncio.Event`` per task id."""

    def __init__(
        self,
        *,
        result_expires: float = DEFAULT_RESULT_EXPIRES_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.result_expires_s = result_expires
        self._clock = clock
        self._records: dict[str, tuple[ResultRecord, float]] = {}
        self._final: dict[str, asyncio.Event] = {}
        self._keys: dict[str, _Key] = {}
        self._revocations: list[Revocation] = []
        self._revoked = asyncio.Event()
        #: unique-enqueue key -> (task id holding it, monotonic end of its window).
        self._unique: dict[str, tuple[str, float]] = {}
        self._reserves = 0
        #: Concurrency slots: key -> owner -> monotonic deadline of its lease.
        self._slots: dict[str, dict[str, float]] = {}
        #: Chords: id -> (size, completed member ids, the member that fired, monotonic expiry).
        self._chords: dict[str, _Chord] = {}
        #: Rate limits (rates.py): key -> TAT; (key, ticket) -> (booked token, void after).
        self._tats: dict[str, float] = {}
        self._bookings: dict[tuple[str, str], tuple[float, float]] = {}
        self._rate_reserves = 0
        #: Periodic schedules: name -> their state (docs/periodic.md).
        self._schedules: dict[str, ScheduleState] = {}

    @property
    def location(self) -> str:
        return "memory:// (inside this process only)"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryResultBackend:
        """``memory://?result_expires=60``; typos refused."""
        _, opts = parse_options(url, options, _MemoryResultOptions, what="memory results")
        return cls(result_expires=opts.result_expires)

    async def store(self, record: ResultRecord) -> None:
        self._records[record.task_id] = (record, self._clock() + self.result_expires_s)
        if record.state.is_final:
            self._event(record.task_id).set()

    async def fetch(self, task_id: str) -> ResultRecord | None:
        entry = self._records.get(task_id)
        if entry is None:
            return None
        record, expires_at = entry
        if self._clock() >= expires_at:
            del self._records[task_id]
            self._final.pop(task_id, None)
            return None
        return record

    async def wait(self, task_id: str, timeout_s: float | None) -> ResultRecord | None:
        record = await self.fetch(task_id)
        if record is not None and record.state.is_final:
            return record
        try:
            async with asyncio.timeout(timeout_s):
                await self._event(task_id).wait()
        except TimeoutError:
            return None
        return await self.fetch(task_id)

    def _event(self, task_id: str) -> asyncio.Event:
        return self._final.setdefault(task_id, asyncio.Event())

    # -- revocations: a list readers follow by index (in-process only) --------

    async def revoke(self, items: Sequence[Revocation]) -> None:
        self._revocations.extend(items)
        self._revoked.set()
        self._revoked = asyncio.Event()  # the next wait is for the next revoke

    async def revocations_after(
        self, cursor: str | None, wait_s: float
    ) -> tuple[list[Revocation], str]:
        start = int(cursor or 0)
        if len(self._revocations) == start and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._revoked.wait(), wait_s)
        found = self._revocations[start:]
        return live(found, time.time()), str(start + len(found))

    # -- the idempotency ledger ------------------------------------------------

    async def claim(self, key: str, owner: str, task_id: str, lease_s: float) -> Claim:
        now, held = self._clock(), self._keys.get(key)
        if held is not None and now < held.until:
            if held.done:
                return Claim(ClaimStatus.COMPLETED, held.task_id)
            if held.owner != owner:
                return Claim(ClaimStatus.BUSY)
        self._keys[key] = _Key(owner, task_id, now + lease_s)
        return Claim(ClaimStatus.CLAIMED)

    async def renew(self, key: str, owner: str, task_id: str, lease_s: float) -> bool:
        now, held = self._clock(), self._keys.get(key)
        if held is None or now >= held.until:
            # Expired with nobody taking it over: still this run's to hold.
            self._keys[key] = _Key(owner, task_id, now + lease_s)
            return True
        if held.done or held.owner != owner:
            return False
        held.until = now + lease_s
        return True

    async def complete(self, key: str, owner: str, record: ResultRecord) -> None:
        held = self._keys.get(key)
        if held is None or not held.done or self._clock() >= held.until:
            self._keys[key] = _Key(
                owner, record.task_id, self._clock() + self.result_expires_s, done=True
            )
        await self.store(record)

    async def release(self, key: str, owner: str) -> None:
        held = self._keys.get(key)
        if held is not None and not held.done and held.owner == owner:
            del self._keys[key]

    # -- unique enqueue (docs/task-control.md) -----------------------------------
    # No await inside: each is atomic on the event loop, as a script is on Redis.

    async def reserve_unique(self, key: str, task_id: str, ttl_s: float) -> str | None:
        now = self._clock()
        held = self._unique.get(key)
        if held is not None and now < held[1]:
            return held[0]
        self._reserves += 1
        if self._reserves % _SWEEP_UNIQUE_EVERY == 0:  # windows that ended: forgotten
            self._unique = {k: v for k, v in self._unique.items() if now < v[1]}
        self._unique[key] = (task_id, now + ttl_s)
        return None

    async def unreserve_unique(self, key: str, task_id: str) -> None:
        held = self._unique.get(key)
        if held is not None and held[0] == task_id:
            del self._unique[key]

    # -- concurrency slots ------------------------------------------------------

    async def acquire_slot(self, key: str, limit: int, owner: str, lease_s: float) -> bool:
        now = self._clock()
        holders = {o: until for o, until in self._slots.get(key, {}).items() if until > now}
        if owner not in holders and len(holders) >= limit:
            self._slots[key] = holders
            return False
        holders[owner] = now + lease_s
        self._slots[key] = holders
        return True

    async def renew_slot(self, key: str, owner: str, lease_s: float) -> bool:
        # An entry still here was never swept by an acquire: nobody took its place.
        holders = self._slots.get(key)
        if holders is None or owner not in holders:
            return False
        holders[owner] = self._clock() + lease_s
        return True

    async def release_slot(self, key: str, owner: str) -> None:
        holders = self._slots.get(key)
        if holders is not None:
            holders.pop(owner, None)
            if not holders:
                del self._slots[key]

    # -- chords (docs/workflows.md) ------------------------------------------------

    async def chord_member_done(self, chord_id: str, member_id: str, size: int) -> bool:
        now = self._clock()
        chord = self._chords.get(chord_id)
        if chord is None or chord.until <= now:
            if len(self._chords) % _SWEEP_UNIQUE_EVERY == 0:  # chords whose time ended
                self._chords = {k: c for k, c in self._chords.items() if c.until > now}
            chord = self._chords[chord_id] = _Chord(size, now, set())
        chord.until = now + CHORD_COUNT_KEEP_FACTOR * self.result_expires_s  # from the latest
        chord.done.add(member_id)
        if chord.fired_by is None and len(chord.done) >= chord.size:
            chord.fired_by = member_id
        return chord.fired_by == member_id

    # -- rate limits (rates.py) ----------------------------------------------------

    async def reserve_rate(self, key: str, ticket: str, interval_s: float, late_s: float) -> float:
        now = self._clock()
        self._rate_reserves += 1
        if self._rate_reserves % 1_000 == 0:  # now and then: what can no longer matter goes
            self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
            self._bookings = {k: b for k, b in self._bookings.items() if b[1] >= now}
        booking = self._bookings.get((key, ticket))
        taken = step(
            self._tats.get(key),
            None if booking is None else booking[0],
            now=now,
            interval_s=interval_s,
            late_s=late_s,
        )
        if taken.tat is not None:
            self._tats[key] = taken.tat
        if taken.book_at is not None:
            self._bookings[(key, ticket)] = (taken.book_at, taken.book_at + late_s)
        elif taken.drop_booking:
            del self._bookings[(key, ticket)]
        return taken.wait_s

    # -- periodic schedules -----------------------------------------------------

    async def record_schedule(
        self,
        name: str,
        *,
        fired: float | None,
        next_fire: float | None,
        distrust_after: float | None = None,
    ) -> None:
        old = self._schedules.get(name)
        last = None if old is None else old.last_fire
        if fired is not None and (
            last is None
            or tick_ms(fired) > tick_ms(last)
            or (distrust_after is not None and tick_ms(last) > tick_ms(distrust_after))
        ):
            last = tick_ms(fired) / 1000
        upcoming = next_fire if next_fire is not None else (None if old is None else old.next_fire)
        self._schedules[name] = ScheduleState(name, last, upcoming, time.time())

    async def schedule_states(self, names: Sequence[str] | None = None) -> dict[str, ScheduleState]:
        wanted = self._schedules if names is None else names
        return {n: self._schedules[n] for n in wanted if n in self._schedules}
