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
from aioack.results.base import ResultBackend
from aioack.task import Producer

logger = logging.getLogger("aioack.periodic")

#: Seconds a claimed tick stays held by a scheduler that died before publishing it.
DEFAULT_TICK_LEASE_S = 30.0
#: missed="skip": a tick later than this (or than two leases) counts as missed.
SKIP_GRACE_S = 60.0
#: Seconds to wait before trying again after the broker or backend failed.
RETRY_AFTER_S = 1.0


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
        while True:
            try:
                wake = await self.run_once()
            except (AioackError, OSError) as exc:  # BrokerUnavailable, PublishFailed, QueueFull
                logger.warning("scheduler %s: %s; trying again", self.owner, exc)
                wake = self._clock() + RETRY_AFTER_S
            await self._sleep(max(0.0, wake - self._clock()))

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
            last = state.last_fire if state is not None else None
            upcoming = schedule.next_after(now)
            for tick in self.due(schedule, last, now):
                # In order: a tick held by another scheduler stops this pass, so the
                # last fire never passes a tick claimed by one that then died.
                if not await self._fire(backend, schedule, tick, upcoming):
                    break
            if state is None or state.next_fire != upcoming:
                await backend.record_schedule(schedule.name, fired=None, next_fire=upcoming)
            wake = min(wake, upcoming)
        return wake

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
        self, backend: ResultBackend, schedule: Schedule, tick: float, upcoming: float
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
        await backend.record_schedule(schedule.name, fired=tick, next_fire=upcoming)
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


def _when(tick: float) -> str:
    return dt.datetime.fromtimestamp(tick, dt.UTC).isoformat(timespec="milliseconds")
