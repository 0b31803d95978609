"""The scheduler: publishes each tick of every schedule, once, however many run.

Every scheduler (in each worker, or ``python -m aioack scheduler``) looks at
every tick of every schedule; the result backend decides which one fires it:

1. **claim**: ``reserve_unique(tick id, owner, lease)``, an atomic take-if-free
   with a TTL. One scheduler takes it; the others see it held and go on.
2. **publish** the run, with the tick id as its task id and idempotency key.
3. **record** the tick as the schedule's last fire (it only moves forward).
   Every scheduler fires only ticks after the last fire, so a fired tick is
   never claimed again, even once its claim has expired.

A schedule's due ticks are claimed oldest first, and a tick held by another
scheduler ends the pass for that schedule: so the last fire never moves past
a claimed tick that was not published.

The crash gap: a scheduler that dies between 1 and 3 leaves the claim to
expire; within one lease another scheduler claims the tick again and
publishes it (unless, under missed="once" or "skip", a newer tick of the
schedule came due meanwhile: then it is a missed tick, and the policy
applies). Had the dead one published before dying, that second publish
carries the same task id and idempotency key: the worker runs it once
(effect-once), so the tick is still one run. A scheduler stopped cleanly
frees its claim at once.

A clock ahead: a scheduler whose clock runs ahead fires ticks from the
others' future and records them as the last fire. Were that trusted, the
others would fire nothing until their clocks reached it (a host booted a
year ahead would stop every schedule for a year). So a last fire more than
one lease after a scheduler's own now is distrusted: it warns, fires from the
last fire it trusted (or from now) by the missed policy, and its records
replace the one from the future.

A scheduler never stops on an error: a broker or backend outage, or a bug,
is logged and retried with backoff, since it runs inside workers (a
scheduler fault must not stop a worker from running tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from aioack.errors import AioackError, ConfigurationError
from aioack.message import Message
from aioack.periodic.schedule import MAX_CATCH_UP_TICKS, Schedule
from aioack.results.base import ResultBackend, tick_ms
from aioack.task import Producer

logger = logging.getLogger("aioack.periodic")

#: Seconds a claimed tick stays held by a scheduler that died before publishing it.
DEFAULT_TICK_LEASE_S = 30.0
#: missed="skip": a tick later than this (or than two leases) counts as missed.
SKIP_GRACE_S = 60.0
#: Seconds to wait before trying again after a failed pass; doubled each failure in a row.
RETRY_AFTER_S = 1.0
#: The longest wait between failed passes.
MAX_RETRY_AFTER_S = 60.0


class Scheduler:
    """Publishes the runs of ``schedules`` through ``producer`` at their ticks.

    ``clock`` (Unix time) and ``sleep`` are injectable, so tests drive time.
    ``lease_s``: how long a tick claimed by a scheduler that dies stays held
    before another fires it.
    """

    def __init__(
        self,
        schedules: Sequence[Schedule],
        producer: Producer,
        *,
        lease_s: float = DEFAULT_TICK_LEASE_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        owner: str | None = None,
    ) -> None:
        if not 0 < lease_s <= 3600:
            raise ConfigurationError(
                f"scheduler lease must be in (0, 3600] seconds, not {lease_s!r}"
            )
        self.schedules = list(schedules)
        self.lease_s = float(lease_s)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._producer = producer
        self._clock = clock
        self._sleep = sleep
        #: Unix time this scheduler started: a schedule never fired fires from here on.
        self.started_at: float | None = None
        #: Ticks this scheduler published (tests and logs read it).
        self.fired = 0
        #: Per schedule: the newest last fire this scheduler trusted (or fired), where it
        #: fires from while the recorded one is from a clock ahead.
        self._trusted_last: dict[str, float] = {}
        #: Schedules whose recorded last fire is ahead of this clock (warned once each time).
        self._ahead: set[str] = set()

    def _backend(self) -> ResultBackend:
        if self._producer.results is None:
            raise ConfigurationError(
                "periodic tasks claim their ticks in the result backend: "
                "App(results='redis://...') or App(results='sqlite://')"
            )
        return self._producer.results

    async def run(self) -> None:
        """Fire ticks until cancelled. A broker or backend outage is logged and retried."""
        self._backend()  # no result backend: fail now, not at the first tick
        names = ", ".join(f"{s.name} ({s.spec})" for s in self.schedules) or "(none)"
        logger.info("scheduler %s ready: %s", self.owner, names)
        failures = 0
        while True:
            try:
                wake = await self.run_once()
                failures = 0
            except (AioackError, OSError) as exc:  # BrokerUnavailable, PublishFailed, QueueFull
                failures += 1
                wake = self._clock() + self._retry_after(failures)
                logger.warning("scheduler %s: %s; trying again", self.owner, exc)
            except Exception:
                # A bug (or data no check foresaw): logged with its traceback and retried,
                # never raised, because this runs in the worker's TaskGroup.
                failures += 1
                wake = self._clock() + self._retry_after(failures)
                logger.exception("scheduler %s: unexpected error; trying again", self.owner)
            await self._sleep(max(0.0, wake - self._clock()))

    @staticmethod
    def _retry_after(failures: int) -> float:
        return min(MAX_RETRY_AFTER_S, RETRY_AFTER_S * 2.0 ** min(failures - 1, 16))

    async def run_once(self) -> float:
        """One pass: fire every due tick of every schedule; return when to look again."""
        backend = self._backend()
        await self._producer.use_running_loop()
        await backend.connect()
        now = self._clock()
        if self.started_at is None:
            self.started_at = now
        states = await backend.schedule_states([s.name for s in self.schedules])
        wake = now + self.lease_s  # at least once a lease: a claim whose scheduler died lapses
        for schedule in self.schedules:
            state = states.get(schedule.name)
            last = self._last_fire(schedule.name, state.last_fire if state else None, now)
            upcoming = schedule.next_after(now)
            for tick in self.due(schedule, last, now):
                # In order: a tick held by another scheduler stops this pass, so the
                # last fire never passes a tick claimed by one that then died.
                if not await self._fire(backend, schedule, tick, upcoming, now):
                    break
                self._trusted_last[schedule.name] = tick
            if state is None or _ms(state.next_fire) != tick_ms(upcoming):
                await backend.record_schedule(schedule.name, fired=None, next_fire=upcoming)
            wake = min(wake, upcoming)
        return wake

    def _last_fire(self, name: str, recorded: float | None, now: float) -> float | None:
        """The last fire to count from: the recorded one, unless a clock ahead wrote it.

        A recorded last fire more than a lease after ``now`` is from a scheduler whose
        clock is ahead (none fires a tick after its own now). Trusted, it would stop
        the schedule until this clock reached it; instead this scheduler fires from the
        last fire it trusted (or from now), and its records replace the one ahead.
        """
        if recorded is None or recorded <= self._distrust_after(now):
            self._ahead.discard(name)
            if recorded is not None:
                self._trusted_last[name] = recorded
            return recorded
        anchor = self._trusted_last.setdefault(name, now)
        if name not in self._ahead:
            self._ahead.add(name)
            logger.warning(
                "periodic %s: last fire recorded at %s, %.3fs after this scheduler's clock "
                "(%s): a scheduler's clock is ahead (check NTP on every host); firing from "
                "%s on",
                name,
                _when(recorded),
                recorded - now,
                _when(now),
                _when(anchor),
                extra={"event": "periodic_clock_ahead", "schedule": name},
            )
        return anchor

    def _distrust_after(self, now: float) -> float:
        """A recorded last fire later than this came from a clock ahead of this one."""
        return now + self.lease_s

    def due(self, schedule: Schedule, last_fire: float | None, now: float) -> list[float]:
        """The ticks to fire now, oldest first, by the schedule's ``missed`` policy."""
        anchor = last_fire if last_fire is not None else (self.started_at or now)
        limit = MAX_CATCH_UP_TICKS if schedule.missed == "all" else 1
        ticks = schedule.ticks_upto(now, anchor, limit)
        if schedule.missed == "skip" and ticks and now - ticks[0] > self.skip_grace_s:
            return []  # late: missed, and a skipped tick is not fired
        return ticks[::-1]

    @property
    def skip_grace_s(self) -> float:
        """How late a tick may fire under missed="skip" (a takeover takes one lease)."""
        return max(SKIP_GRACE_S, 2 * self.lease_s)

    async def _fire(
        self, backend: ResultBackend, schedule: Schedule, tick: float, upcoming: float, now: float
    ) -> bool:
        """Claim, publish and record ``tick``; False if another scheduler holds it."""
        tick_id = schedule.tick_id(tick)
        holder = await backend.reserve_unique(tick_id, self.owner, self.lease_s)
        if holder is not None:  # another scheduler fires it (or fired it: its record follows)
            logger.debug("periodic %s: tick %s held by %s", schedule.name, _when(tick), holder)
            return False
        try:
            await self._producer.publish(self._message(schedule, tick, tick_id), schedule.queue)
        except BaseException:
            # Freed at once, so another scheduler (or the next pass) fires it now.
            with contextlib.suppress(Exception):
                await asyncio.shield(backend.unreserve_unique(tick_id, self.owner))
            raise
        await backend.record_schedule(
            schedule.name,
            fired=tick,
            next_fire=upcoming,
            distrust_after=self._distrust_after(now),
        )
        self.fired += 1
        logger.info(
            "periodic %s: tick %s fired as %s[%s] (%.3fs late)",
            schedule.name,
            _when(tick),
            schedule.task,
            tick_id,
            self._clock() - tick,
            extra={"event": "periodic_fire", "schedule": schedule.name, "task_id": tick_id},
        )
        return True

    def _message(self, schedule: Schedule, tick: float, tick_id: str) -> Message:
        return Message(
            id=tick_id,
            task=schedule.task,
            args=schedule.args,
            kwargs=schedule.kwargs,
            expires=None if schedule.expires_s is None else tick + schedule.expires_s,
            published_at=time.time(),
            idempotency_key=tick_id,
        )


def _ms(instant: float | None) -> int | None:
    return None if instant is None else tick_ms(instant)


def _when(tick: float) -> str:
    return dt.datetime.fromtimestamp(tick, dt.UTC).isoformat(timespec="milliseconds")
