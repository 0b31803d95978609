"""Declaring periodic tasks: bad schedules fail at the decorator, saying what is wrong;
ticks computed from cron (in a time zone) and from intervals."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from aioack import App, ConfigurationError
from aioack.periodic import Schedule


def _app() -> App:
    return App("memory://", results="memory://")


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ({"cron": "*/5 * * *"}, "five fields"),
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "0 0 30 2 *"}, "invalid cron expression"),  # Feb 30 never comes
        ({"cron": "*/5 * * * *", "tz": "Europe/Parris"}, "unknown time zone"),
        ({"every": 0}, "every=0 must be at least"),
        ({"every": -5}, "every=-5 must be at least"),
        ({"every": float("nan")}, "must be at least"),
        ({"every": "60"}, "number of seconds"),
        ({"cron": "* * * * *", "every": 60}, "not both"),
        ({}, "one of them"),
        ({"every": 60, "tz": "UTC"}, "tz applies to cron"),
        ({"every": 60, "missed": "catchup"}, "not a policy"),
        ({"every": 60, "expires": 0}, "expires=0"),
    ],
)
def test_a_bad_schedule_fails_at_the_decorator(schedule: dict[str, object], says: str) -> None:
    app = _app()
    with pytest.raises(ConfigurationError, match=says):

        @app.periodic(**schedule)  # type: ignore[arg-type]
        @app.task
        async def job() -> None: ...


def test_arguments_are_checked_against_the_task_at_declaration() -> None:
    app = _app()

    @app.task
    async def report(kind: str, days: int) -> None: ...

    with pytest.raises(ConfigurationError, match="arguments do not fit"):
        app.periodic(report, every=60, args=("daily",))
    with pytest.raises(ConfigurationError, match="arguments do not fit"):
        app.periodic(report, every=60, args=("daily", "seven"))
    schedule = app.periodic(report, every=60, args=("daily",), kwargs={"days": 7})
    assert (schedule.args, schedule.kwargs) == (["daily", 7], {})  # as delay() sends them


def test_two_schedules_of_a_task_need_names() -> None:
    app = _app()

    @app.periodic(every=60)
    @app.task
    async def job() -> None: ...

    with pytest.raises(ConfigurationError, match="declared twice"):
        app.periodic(job, cron="0 * * * *")
    assert app.periodic(job, cron="0 * * * *", name="hourly").name == "hourly"


def test_a_task_of_another_app_is_refused() -> None:
    other = _app()

    @other.task
    async def job() -> None: ...

    with pytest.raises(ConfigurationError, match="not registered on this App"):
        _app().periodic(job, every=60)


def test_the_decorator_registers_a_plain_function_as_a_task() -> None:
    app = _app()

    @app.periodic(every=30)
    async def tidy() -> None: ...

    assert app.schedules[tidy.name].task == tidy.name and app.tasks[tidy.name] is tidy


def test_cron_ticks_fall_in_the_schedule_time_zone_across_dst() -> None:
    """09:30 Paris is 08:30 UTC in winter and 07:30 UTC in summer (DST on 2026-03-29)."""
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    schedule = Schedule("s", "t", "q", cron="30 9 * * *", tz="Europe/Paris")
    now = dt.datetime(2026, 3, 30, 12, 0, tzinfo=paris).timestamp()
    ticks = schedule.ticks_upto(now, after=0, limit=3)
    utc = [dt.datetime.fromtimestamp(t, dt.UTC).strftime("%m-%d %H:%M") for t in ticks]
    assert utc == ["03-30 07:30", "03-29 07:30", "03-28 08:30"]
    assert schedule.next_after(now) == dt.datetime(2026, 3, 31, 9, 30, tzinfo=paris).timestamp()


def test_interval_ticks_are_whole_multiples_since_the_epoch() -> None:
    schedule = Schedule("s", "t", "q", every_s=60)
    assert schedule.ticks_upto(3_725.0, after=3_540.0, limit=10) == [3_720.0, 3_660.0, 3_600.0]
    assert schedule.ticks_upto(3_725.0, after=0, limit=2) == [3_720.0, 3_660.0]
    assert schedule.next_after(3_720.0) == 3_780.0
    assert schedule.tick_id(3_720.0) == "periodic:s:3720000"


def _paris_ticks(cron: str, day: tuple[int, int, int], hours: int = 6) -> list[str]:
    """Local times of the ticks from 23:00 the evening before ``day``, oldest first,
    and the same ticks walked with next_after, as the scheduler's wake-ups go."""
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    schedule = Schedule("s", "t", "q", cron=cron, tz="Europe/Paris")
    start = dt.datetime(*day, tzinfo=paris).timestamp() - 3600
    ticks = schedule.ticks_upto(start + hours * 3600, start, 100)[::-1]
    walked, at = [], start
    for _ in ticks:
        at = schedule.next_after(at)
        walked.append(at)
    assert walked == ticks, "next_after and ticks_upto disagree"
    return [dt.datetime.fromtimestamp(t, paris).isoformat() for t in ticks]


def test_a_fixed_hour_cron_fires_once_in_the_repeated_dst_hour() -> None:
    """26 Oct 2025, Paris: 02:00-03:00 happens twice (CEST, then CET); 02:30 fires once."""
    assert _paris_ticks("30 2 * * *", (2025, 10, 26)) == ["2025-10-26T02:30:00+02:00"]
    assert _paris_ticks("0 1-3 * * *", (2025, 10, 26)) == [
        "2025-10-26T01:00:00+02:00",
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T03:00:00+01:00",
    ]


def test_an_hourly_cron_fires_in_both_runs_of_the_repeated_hour() -> None:
    assert _paris_ticks("0 * * * *", (2025, 10, 26), hours=5) == [
        "2025-10-26T00:00:00+02:00",
        "2025-10-26T01:00:00+02:00",
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T03:00:00+01:00",
    ]


def test_a_cron_in_the_skipped_dst_hour_fires_once_when_the_clock_jumps() -> None:
    """30 Mar 2025, Paris: 02:00 CET jumps to 03:00 CEST; 02:30 fires at 03:00, once."""
    assert _paris_ticks("30 2 * * *", (2025, 3, 30)) == ["2025-03-30T03:00:00+02:00"]
    assert _paris_ticks("0 3 * * *", (2025, 3, 30)) == ["2025-03-30T03:00:00+02:00"]
