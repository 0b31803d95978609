"""``inspect``'s schedules: each periodic schedule of the App, with its last and next fire.

The fires are what the schedulers recorded in the result backend, so they
are those of every scheduler, wherever it runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aioack.app import App


async def schedules_report(app: App) -> list[dict[str, Any]] | None:
    """One entry per schedule the App declares (None: it declares none, or keeps no results)."""
    if not app.schedules or app.results is None:
        return None
    await app.results.connect()
    states = await app.results.schedule_states(list(app.schedules))
    report = []
    for name, schedule in app.schedules.items():
        state = states.get(name)
        report.append(
            {
                "name": name,
                "task": schedule.task,
                "schedule": schedule.spec,
                "missed": schedule.missed,
                "last_fire": None if state is None else state.last_fire,
                "next_fire": None if state is None else state.next_fire,
            }
        )
    return report


def schedule_rows(report: list[dict[str, Any]]) -> list[list[Any]]:
    """The table's rows, header first; times in UTC, '-' where unknown."""
    rows: list[list[Any]] = [["schedule", "task", "when", "missed", "last fire", "next fire"]]
    for s in report:
        rows.append(
            [
                s["name"],
                s["task"],
                s["schedule"],
                s["missed"],
                _utc(s["last_fire"]),
                _utc(s["next_fire"]),
            ]
        )
    return rows


def _utc(moment: float | None) -> str:
    if moment is None:
        return "-"
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
