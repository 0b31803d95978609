"""One periodic schedule: when its ticks fall, checked when it is declared.

A *tick* is an instant a schedule fires at, in Unix time. Every scheduler
computes the same ticks from the same schedule (cron ticks in the schedule's
time zone; ``every`` ticks at whole multiples of the interval since the Unix
epoch), so a tick names one run whichever scheduler fires it: its id is
``periodic:{name}:{tick in ms}``, the task id and idempotency key of that run.

Nothing here does I/O: a bad schedule fails at ``@app.periodic(...)``.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, Literal

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from aioack.errors import ConfigurationError
from aioack.results.base import tick_ms

#: What a schedule does with ticks that passed while no scheduler ran.
Missed = Literal["skip", "once", "all"]
MISSED_POLICIES: tuple[str, ...] = ("skip", "once", "all")
#: missed="all" fires at most this many missed ticks (the newest), oldest first.
MAX_CATCH_UP_TICKS = 100
#: The shortest ``every``: below it the scheduler's round trips are the schedule.
MIN_EVERY_S = 0.1
#: The longest ``every``: a year (a longer one is a one-off, not a schedule).
MAX_EVERY_S = 366 * 86_400.0
#: The longest schedule name: its tick ids (task ids, at most 200) must fit.
MAX_NAME_CHARS = 150


@dataclass(frozen=True, slots=True)
class Schedule:
    """A task to publish at each tick of a cron expression or a fixed interval."""

    name: str
    task: str
    queue: str
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    missed: Missed = "once"
    #: Seconds after its tick a run is dead-lettered instead of run (None: never).
    expires_s: float | None = None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.tz)

    @property
    def spec(self) -> str:
        """How it is written, for inspect and logs: ``cron */5 * * * * Europe/Paris``."""
        if self.cron is not None:
            return f"cron {self.cron} {self.tz}"
        return f"every {self.every_s:g}s"

    def ticks_upto(self, now: float, after: float, limit: int) -> list[float]:
        """The ticks in (``after``, ``now``], newest first, at most ``limit`` of them.

        Compared in whole milliseconds (``tick_ms``), as ticks are named and stored.
        """
        found: list[float] = []
        after_ms = tick_ms(after)
        if self.every_s is not None:
            k = math.floor(now / self.every_s)
            while len(found) < limit and tick_ms(tick := k * self.every_s) > after_ms:
                found.append(tick)
                k -= 1
            return found
        # croniter's get_prev is strictly before its start: start a second past now.
        start = dt.datetime.fromtimestamp(math.floor(now) + 1, self.zone)
        walk = croniter(self._cron, start)
        while len(found) < limit and tick_ms(tick := walk.get_prev(float)) > after_ms:
            if not self._repeats_wall_time(tick):
                found.append(tick)
        return found

    def next_after(self, now: float) -> float:
        """The first tick after ``now``."""
        if self.every_s is not None:
            return (math.floor(now / self.every_s) + 1) * self.every_s
        walk = croniter(self._cron, dt.datetime.fromtimestamp(now, self.zone))
        while self._repeats_wall_time(tick := float(walk.get_next(float))):
            pass
        return tick

    def _repeats_wall_time(self, tick: float) -> bool:
        """Whether ``tick`` is the second occurrence of a local time (the hour repeated
        when daylight saving time ends) of a cron with a fixed hour, which classic
        cron runs once: "30 2 * * *" fires at the first 02:30 only. A cron whose hour
        field is a wildcard ("0 * * * *", "*/15 * * * *", "0 */2 * * *") fires in
        both hours: each of them is an hour that passes.
        """
        # fromtimestamp sets fold=1 only on the later of two instants with one wall time.
        return self._fixed_hour and dt.datetime.fromtimestamp(tick, self.zone).fold == 1

    @property
    def _fixed_hour(self) -> bool:
        fields = self._cron.split()
        if len(fields) == 1:  # a nickname: @hourly is the only one not at a fixed hour
            return fields[0] != "@hourly"
        return not fields[1].startswith("*")

    @property
    def _cron(self) -> str:
        assert self.cron is not None  # a schedule is cron or every: checked when declared
        return self.cron

    def tick_id(self, tick: float) -> str:
        """The task id (and idempotency key) of the run of ``tick``: the same everywhere."""
        return f"periodic:{self.name}:{tick_ms(tick)}"


def check_schedule(
    name: str,
    cron: str | None,
    every: float | None,
    tz: str | None,
    missed: str,
) -> tuple[str | None, float | None, str]:
    """(cron, every in seconds, time zone name), or ConfigurationError saying what to change."""
    where = f"periodic schedule {name!r}"
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise ConfigurationError(
            f"{where}: name must be 1 to {MAX_NAME_CHARS} printable characters"
        )
    if missed not in MISSED_POLICIES:
        raise ConfigurationError(
            f"{where}: missed={missed!r} is not a policy; use one of "
            + ", ".join(repr(p) for p in MISSED_POLICIES)
        )
    if (cron is None) == (every is None):
        raise ConfigurationError(
            f"{where}: give cron='*/5 * * * *' or every=<seconds>, "
            + ("not both" if cron is not None else "one of them")
        )
    if every is not None:
        if tz is not None:
            raise ConfigurationError(
                f"{where}: tz applies to cron schedules; every={every!r} ticks at whole "
                "multiples of the interval since the Unix epoch, in any time zone"
            )
        return None, _check_every(where, every), "UTC"
    zone = _check_tz(where, tz or "UTC")
    return _check_cron(where, cron, zone), None, zone.key


def _check_every(where: str, every: object) -> float:
    if isinstance(every, bool) or not isinstance(every, int | float):
        raise ConfigurationError(f"{where}: every must be a number of seconds, not {every!r}")
    if not MIN_EVERY_S <= every <= MAX_EVERY_S:  # NaN fails this too
        raise ConfigurationError(
            f"{where}: every={every!r} must be at least {MIN_EVERY_S} and at most "
            f"{MAX_EVERY_S:.0f} seconds (a year)"
        )
    return float(every)


def _check_tz(where: str, tz: object) -> zoneinfo.ZoneInfo:
    if not isinstance(tz, str):
        raise ConfigurationError(
            f"{where}: tz must be an IANA time zone name such as 'Europe/Paris'"
        )
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"{where}: unknown time zone tz={tz!r}; use an IANA name such as 'UTC', "
            "'Europe/Paris' or 'America/New_York'"
        ) from exc


def _check_cron(where: str, cron: object, zone: zoneinfo.ZoneInfo) -> str:
    if not isinstance(cron, str) or not (len(cron.split()) == 5 or _is_nickname(cron)):
        raise ConfigurationError(
            f"{where}: cron={cron!r} must have five fields: minute hour day-of-month "
            "month day-of-week, e.g. '*/5 * * * *' or '0 3 * * mon-fri' (or @hourly, "
            "@daily, @weekly, @monthly, @yearly)"
        )
    try:
        # Built and walked once: a bad field fails here, and so does a date
        # that never comes (Feb 30).
        croniter(cron, dt.datetime(2000, 1, 1, tzinfo=zone)).get_next(float)
    except (CroniterBadCronError, CroniterBadDateError, ValueError) as exc:
        raise ConfigurationError(f"{where}: invalid cron expression {cron!r}: {exc}") from exc
    return cron


def _is_nickname(cron: str) -> bool:
    return cron.strip() in ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually")
