"""The ResultBackend interface: task states, return values, the idempotency ledger.

A backend stores one ``ResultRecord`` per task id (with a TTL) and wakes
waiters when a record reaches a final state; ``get()`` never polls. It also
keeps the effect-once ledger: a key is *claimed* by one run under a lease,
then *completed* atomically with that run's final record.
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from aioack.errors import ConfigurationError

#: Seconds a result (and a completed idempotency key) is kept by default: one day.
DEFAULT_RESULT_EXPIRES_S = 86_400.0

#: A chord's count is kept this many times ``result_expires`` from its latest
#: member (every member refreshes it), so it outlives the members' kept results:
#: a chord slower than ``result_expires`` then completes its count and finds a
#: result missing (``ChordMemberLost``) instead of starting an empty count
#: that never fills. It is lost only when no member completes for that long.
CHORD_COUNT_KEEP_FACTOR = 2.0


class State(enum.StrEnum):
    PENDING = "PENDING"  # not known to the backend (not started yet, or expired)
    STARTED = "STARTED"
    RETRY = "RETRY"  # will run again (Retry, autoretry, requeue)
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"  # the task raised and failed for good
    DEAD_LETTERED = "DEAD_LETTERED"  # refused without a result (limit, expired, rejected...)
    REVOKED = "REVOKED"  # revoked: not run, or (terminate=True) cancelled while running

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.SUCCESS, State.FAILURE, State.DEAD_LETTERED, State.REVOKED})


class ResultRecord(BaseModel):
    """What the backend holds for one task id. ``result`` is JSON (pydantic mode="json")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str
    state: State
    task: str = ""
    attempt: int = 1
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    updated_at: float = Field(default_factory=time.time)


class ClaimStatus(enum.Enum):
    CLAIMED = "claimed"  # this run holds the key now: run it
    COMPLETED = "completed"  # a run with this key finished: do not run again
    BUSY = "busy"  # another live run holds the key: try again later


@dataclass(frozen=True, slots=True)
class Claim:
    status: ClaimStatus
    #: COMPLETED: the task id whose record holds the key's result.
    task_id: str | None = None


@dataclass(slots=True)
class Effect:
    """One effect block of an effect-once run (``async with ctx.effect() as fx``).

    The writes the block queues on ``tx`` are committed together with the
    block's *mark* (key, name) in one transaction when the block exits, and
    only if no run committed that mark before: so the block's writes happen
    at most once per key, however often the task runs.
    """

    key: str
    name: str
    #: Where the block queues its writes: for Redis, a redis-py pipeline in
    #: MULTI mode (``fx.tx.hincrby(...)``; not awaited, not executed by you).
    tx: Any
    #: The task id of the run that committed this mark before this block
    #: started, or None. When set, the block's writes are discarded.
    committed_by: str | None = None
    #: True once this block's writes were committed (set when the block exits).
    applied: bool = False

    @property
    def already_applied(self) -> bool:
        """An earlier run committed this effect: skip work that only feeds it."""
        return self.committed_by is not None


@dataclass(frozen=True, slots=True)
class Revocation:
    """A task id no worker may run (``app.revoke()``), until ``expires_at``."""

    task_id: str
    #: Cancel a run of it that is going on now, too.
    terminate: bool
    #: Unix time after which workers forget it.
    expires_at: float


def tick_ms(instant: float) -> int:
    """A periodic tick (or any Unix time) in whole milliseconds: how ticks are named,
    stored and compared everywhere, so a float rounded in storage (Lua's cjson keeps
    14 significant digits) still names the same tick."""
    return round(instant * 1000)


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the backend holds for one periodic schedule (docs/periodic.md)."""

    name: str
    #: Unix time of the newest tick fired, or None (none yet).
    last_fire: float | None
    #: Unix time of the next tick, as the last scheduler to look computed it.
    next_fire: float | None
    #: Unix time a scheduler last wrote this.
    updated_at: float


class ResultBackend(ABC):
    """Stores states and results; wakes waiters; keeps the idempotency ledger.

    Every method translates its client's errors to ``BrokerError`` subclasses
    (``BrokerUnavailable`` when the store cannot be reached).
    """

    #: Seconds a record (and a completed key) is kept after its last update.
    result_expires_s: float = DEFAULT_RESULT_EXPIRES_S

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from a URL of this backend's scheme; ``options`` override its query.

        Raises:
            ConfigurationError: an unknown option (with the closest known name) or
                a bad value.
        """

    @property
    def location(self) -> str:
        """Where the results are, for the worker's ready line: a URL, password masked."""
        return type(self).__name__

    async def connect(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Open connections. Idempotent; the default does nothing.

        Raises:
            BrokerUnavailable: the store cannot be reached.
        """

    async def aclose(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Close connections. Idempotent; the default does nothing."""

    @abstractmethod
    async def store(self, record: ResultRecord) -> None:
        """Save ``record`` (replacing the task's previous one); wake waiters if final.

        Raises:
            BrokerUnavailable: not stored.
        """

    @abstractmethod
    async def fetch(self, task_id: str) -> ResultRecord | None:
        """The task's record, or None (never stored, or expired).

        Raises:
            BrokerUnavailable: the result backend cannot be reached.
        """

    @abstractmethod
    async def wait(self, task_id: str, timeout_s: float | None) -> ResultRecord | None:
        """Wait until the task's record is final, without polling; None on timeout.

        Raises:
            BrokerUnavailable: the result backend cannot be reached.
        """

    @abstractmethod
    async def claim(self, key: str, owner: str, task_id: str, lease_s: float) -> Claim:
        """Atomically claim idempotency ``key`` for ``owner`` for ``lease_s`` seconds.

        A key whose lease ran out (its run died) is free to claim again.

        Raises:
            BrokerUnavailable: the claim is unknown; do not run.
        """

    @abstractmethod
    async def renew(self, key: str, owner: str, task_id: str, lease_s: float) -> bool:
        """Extend the lease ``owner`` holds on ``key``; False if it lost the key.

        A key whose lease ran out while nobody else claimed it is taken again
        (True); a key another owner claimed, or that a run completed, is lost.

        Raises:
            BrokerUnavailable: the result backend cannot be reached.
        """

    @abstractmethod
    async def complete(self, key: str, owner: str, record: ResultRecord) -> None:
        """Store ``record`` and mark ``key`` completed by it, in one atomic step.

        A key completed already keeps its first record (``record`` is still
        stored under its own task id).

        Raises:
            BrokerUnavailable: neither was stored.
        """

    def effect(self, key: str, name: str, task_id: str) -> AbstractAsyncContextManager[Effect]:
        """An effect block for ``key``: writes queued on ``Effect.tx`` commit once, ever.

        Backends that cannot commit writes atomically with a mark do not
        offer effect blocks.

        Raises:
            ConfigurationError: this backend has no transactional effects.
        """
        raise ConfigurationError(
            f"{type(self).__name__} cannot commit effects atomically with their mark: "
            "ctx.effect() needs App(results='redis://...'), and the block's writes go to "
            "that Redis"
        )

    @abstractmethod
    async def release(self, key: str, owner: str) -> None:
        """Give up ``owner``'s claim on ``key`` (the run did not complete).

        Raises:
            BrokerUnavailable: the claim stays until its lease runs out.
        """

    # -- task control (docs/task-control.md) ---------------------------------
    #
    # The result backend is where aioack keeps what is not a queue: results,
    # the idempotency ledger, and the state of task control (revocations,
    # unique-enqueue keys, per-key concurrency slots). One store for every
    # broker: RabbitMQ has none of its own. Not abstract: a third-party
    # backend without them still stores results, and task control says why not.

    def _no_control(self, what: str) -> ConfigurationError:
        return ConfigurationError(
            f"{type(self).__name__} does not keep {what}: use App(results='sqlite://') "
            "or App(results='redis://...')"
        )

    async def revoke(self, revocations: Sequence[Revocation]) -> None:
        """Record revocations and tell every watching worker now.

        Raises:
            BrokerUnavailable: not recorded.
        """
        raise self._no_control("revocations")

    async def revocations_after(
        self, cursor: str | None, wait_s: float
    ) -> tuple[list[Revocation], str]:
        """Revocations recorded after ``cursor`` (None: every live one), and the new cursor.

        With none yet, waits up to ``wait_s`` seconds for one (0: do not wait).
        Expired ones may be left out.

        Raises:
            BrokerUnavailable: the result backend cannot be reached.
        """
        raise self._no_control("revocations")

    async def reserve_unique(self, key: str, task_id: str, ttl_s: float) -> str | None:
        """Atomically take unique-enqueue ``key`` for ``task_id`` for ``ttl_s`` seconds.

        Returns None when taken (publish), else the task id holding it (do not).

        Raises:
            BrokerUnavailable: unknown; nothing is published.
        """
        raise self._no_control("unique-enqueue keys")

    async def unreserve_unique(self, key: str, task_id: str) -> None:
        """Free ``key`` if ``task_id`` still holds it (its publish failed).

        Raises:
            BrokerUnavailable: the key stays until its window ends.
        """
        raise self._no_control("unique-enqueue keys")

    async def acquire_slot(self, key: str, limit: int, owner: str, lease_s: float) -> bool:
        """Take one of ``limit`` concurrency slots of ``key`` for ``owner`` for ``lease_s``.

        False when ``limit`` live owners hold it. A slot whose lease ran out
        (its worker died) is free.

        Raises:
            BrokerUnavailable: unknown; do not run.
        """
        raise self._no_control("concurrency slots")

    async def renew_slot(self, key: str, owner: str, lease_s: float) -> bool:
        """Extend ``owner``'s slot of ``key``; False if it had lapsed and was taken.

        Raises:
            BrokerUnavailable: the result backend cannot be reached.
        """
        raise self._no_control("concurrency slots")

    async def release_slot(self, key: str, owner: str) -> None:
        """Give ``owner``'s slot of ``key`` back.

        Raises:
            BrokerUnavailable: it frees itself when its lease runs out.
        """
        raise self._no_control("concurrency slots")

    # -- workflows (docs/workflows.md) -----------------------------------------

    async def chord_member_done(self, chord_id: str, member_id: str, size: int) -> bool:
        """Count ``member_id`` as a completed member of chord ``chord_id`` of ``size``.

        Atomic across every worker: a member counted twice (a duplicate
        delivery) counts once. True when the set is complete and publishing
        the callback is this member's job: the call that completed the set,
        and any later call of that same member (its worker died before it
        published the callback and acked). False for every other call, for
        ever. The first call fixes the chord's size. Kept
        ``CHORD_COUNT_KEEP_FACTOR`` times ``result_expires_s`` from the latest call.

        Raises:
            BrokerUnavailable: unknown whether it was counted; count it again.
        """
        raise self._no_control("chords")

    # -- rate limits (docs/task-control.md "Rate limits") ------------------------

    async def reserve_rate(self, key: str, ticket: str, interval_s: float, late_s: float) -> float:
        """Book the next token of ``key`` (one every ``interval_s`` s, GCRA) for ``ticket``.

        Returns the seconds until that token: 0 means run now. Otherwise the
        token is booked for ``ticket`` (a message id): asking again before
        its time returns what remains, from its time on (up to ``late_s``
        after it) 0, and later a new token is booked. Atomic across workers,
        by the backend's clock, so many callers at once each get their own
        token, one interval apart, and none comes back to find it taken.

        Raises:
            BrokerUnavailable: unknown; do not run now.
        """
        raise self._no_control("rate limits")

    # -- periodic schedules (docs/periodic.md) ---------------------------------

    async def record_schedule(
        self,
        name: str,
        *,
        fired: float | None,
        next_fire: float | None,
        distrust_after: float | None = None,
    ) -> None:
        """Note schedule ``name``'s fire and next tick (Unix times), for schedulers and inspect.

        ``fired`` only moves the last fire forward (a slower scheduler never
        moves it back), compared in whole milliseconds (``tick_ms``); None
        leaves it. ``next_fire`` replaces the one held. A last fire held that
        is later than ``distrust_after`` came from a clock ahead: ``fired``
        replaces it even though it is earlier.

        Raises:
            BrokerUnavailable: not recorded.
        """
        raise self._no_control("periodic schedules")

    async def schedule_states(self, names: Sequence[str] | None = None) -> dict[str, ScheduleState]:
        """The recorded state of the schedules ``names`` (None: of every schedule).

        A schedule never recorded is left out.

        Raises:
            BrokerUnavailable: the result backend cannot be reached.
        """
        raise self._no_control("periodic schedules")
