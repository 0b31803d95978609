"""``python -m aioack inspect``: each queue's depth, the live workers and the schedules.

A table for people, ``--json`` for machines, ``--watch`` to refresh. The
tables are plain aligned text: two small tables need no dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from typing import Any

from aioack.app import App
from aioack.brokers import Broker, QueueStats, WorkerRecord
from aioack.cli.codes import ExitCode
from aioack.cli.inspect_schedules import schedule_rows, schedules_report
from aioack.cli.worker import add_broker_arguments, app_for, close
from aioack.errors import ConfigurationError
from aioack.limits import QueueLimit

EXAMPLES = """\
  python -m aioack inspect myproj.tasks:app
  python -m aioack inspect --broker redis://127.0.0.1:6379/0 -Q emails,default --json
  python -m aioack inspect myproj.tasks:app --watch 2
  python -m aioack inspect myproj.tasks:app --management-url http://guest:guest@127.0.0.1:15672
"""


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="show each queue's depth and the live workers",
        epilog="examples:\n" + EXAMPLES + "\n" + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument(
        "app", nargs="?", help="the App (module.path:attribute): its broker and queues"
    )
    inspect.add_argument("-Q", "--queues", help="comma-separated queues (default: all known)")
    add_broker_arguments(inspect, results=False)
    inspect.add_argument("--json", action="store_true", help="one JSON object, for machines")
    inspect.add_argument(
        "--watch",
        type=watch_interval,
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="refresh every SECONDS (2) until Ctrl-C",
    )
    inspect.add_argument(
        "--management-url",
        help="RabbitMQ only: the management HTTP API (http://user:pass@host:15672), for "
        "unacked counts of every consumer, the queue list and the live workers",
    )
    inspect.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    app = app_for(args) if args.app else App(args.broker)
    if args.management_url:
        # (Not isinstance: importing the RabbitMQ broker would need aio-pika installed.)
        with_management = getattr(app.broker, "with_management", None)
        if with_management is None:
            raise ConfigurationError("--management-url is RabbitMQ's management API; drop it")
        app.use_broker(with_management(args.management_url))
    try:
        return asyncio.run(_run(app, args))
    except KeyboardInterrupt:  # --watch ends with Ctrl-C
        return ExitCode.OK


def watch_interval(text: str) -> float:
    """Seconds between two redraws: 0.5 to 3600 (a redraw asks the broker every time)."""
    seconds = float(text)
    if not 0.5 <= seconds <= 3600:
        raise ValueError(text)  # argparse: "invalid watch_interval value", exit 2
    return seconds


async def _run(app: App, args: argparse.Namespace) -> int:
    try:
        await app.connect()
        queues = await _queues(app, args)
        if isinstance(queues, int):
            return queues
        while True:
            report = await snapshot(app.broker, queues)
            report["schedules"] = await schedules_report(app)
            text = json.dumps(report) if args.json else render(report)
            if args.watch:
                print("\033[2J\033[H" + text, flush=True)  # clear the screen, then draw
                await asyncio.sleep(args.watch)
                continue
            print(text)
            return ExitCode.OK
    finally:
        await close(app)


async def _queues(app: App, args: argparse.Namespace) -> list[str] | int:
    """The queues to show, or the exit code of a bad request."""
    broker = app.broker
    if args.queues:
        named = [q.strip() for q in args.queues.split(",") if q.strip()]
        unknown = [q for q in named if q not in app.queues() and not await broker.has_queue(q)]
        if unknown:
            names = ", ".join(_printable(q) for q in unknown)
            print(f"unknown queue{'s' if len(unknown) > 1 else ''}: {names}", file=sys.stderr)
            return ExitCode.NOT_FOUND
        return named
    known = await broker.queues()
    if known is None and not app.queues():
        raise ConfigurationError(
            "this broker cannot list its queues (RabbitMQ: give --management-url); name "
            "them with -Q, or give the App"
        )
    return list(dict.fromkeys([*app.queues(), *(known or [])]))


async def snapshot(broker: Broker, queues: list[str]) -> dict[str, Any]:
    """What ``inspect --json`` prints: queues, workers, and which figures are unavailable."""
    stats = {queue: await broker.stats(queue) for queue in queues}
    workers = await broker.workers()
    unavailable = []
    if any(not s.unacked_known for s in stats.values()):
        unavailable.append("unacked: only RabbitMQ's management API counts every consumer's")
    if workers is None:
        unavailable.append("workers: RabbitMQ lists them only through its management API")
    return {
        "broker": broker.location,
        "at": time.time(),
        "queues": {queue: _stats_json(s) for queue, s in stats.items()},
        "limits": {
            queue: _limit_json(limit, stats[queue])
            for queue, limit in broker.limits.items()
            if queue in stats
        },
        "workers": None if workers is None else [w.to_json() for w in _sorted(workers)],
        "unavailable": unavailable,
    }


def _limit_json(limit: QueueLimit, stats: QueueStats) -> dict[str, Any]:
    """The queue's limits, and whether its counts reached them (``*_reached``)."""
    length = stats.ready + stats.delayed
    unacked = stats.unacked if stats.unacked_known else None
    return {
        **limit.model_dump(),
        "length": length,
        "unacked": unacked,
        "length_reached": _reached(length, limit.max_length),
        "length_watermark_reached": _reached(length, limit.length_watermark),
        "unacked_reached": _reached(unacked, limit.max_unacked),
        "unacked_watermark_reached": _reached(unacked, limit.unacked_watermark),
    }


def _reached(count: int | None, level: int | None) -> bool | None:
    return None if count is None or level is None else count >= level


def _stats_json(stats: QueueStats) -> dict[str, int | None]:
    return {
        "ready": stats.ready,
        "delayed": stats.delayed,
        "unacked": stats.unacked if stats.unacked_known else None,
        "dead": stats.dead,
    }


def _sorted(workers: list[WorkerRecord]) -> list[WorkerRecord]:
    return sorted(workers, key=lambda w: (w.host, w.started_at, w.worker_id))


def render(report: dict[str, Any]) -> str:
    """The report as two aligned tables."""
    rows = [["queue", "ready", "delayed", "unacked", "dead"]]
    for queue, s in report["queues"].items():
        unacked = "?" if s["unacked"] is None else s["unacked"]
        rows.append([queue, s["ready"], s["delayed"], unacked, s["dead"]])
    limits = report["limits"]
    if limits:
        rows[0].append("limits")
        for row in rows[1:]:
            row.append(_limit_text(limits[row[0]]) if row[0] in limits else "")
    lines = [f"broker {report['broker']}", "", *_table(rows)]
    workers = report["workers"]
    if workers is not None:
        lines += ["", f"workers ({len(workers)})"]
        now = report["at"]
        rows = [["id", "host", "pid", "queues", "concurrency", "in flight", "up", "seen"]]
        for w in workers or ():
            rows.append(
                [
                    w["worker_id"],
                    w["host"],
                    w["pid"],
                    ",".join(w["queues"]),
                    w["concurrency"],
                    w["in_flight"],
                    _age(now - w["started_at"]),
                    _age(now - w["seen_at"]) + " ago",
                ]
            )
        if workers:
            lines += _table(rows)
    if report.get("schedules"):
        lines += [
            "",
            f"schedules ({len(report['schedules'])})",
            *_table(schedule_rows(report["schedules"])),
        ]
    lines += [f"unavailable: {why}" for why in report["unavailable"]]
    return "\n".join(lines)


def _limit_text(limit: dict[str, Any]) -> str:
    """``length 15/100 (reject), unacked 8/50, watermark length 80 REACHED``."""
    parts = []
    if limit["max_length"] is not None:
        policy = (
            "wait {:g}s".format(limit["wait_timeout"]) if limit["when_full"] == "wait" else "reject"
        )
        full = " FULL" if limit["length_reached"] else ""
        parts.append(f"length {limit['length']}/{limit['max_length']} ({policy}){full}")
    if limit["max_unacked"] is not None:
        full = " FULL" if limit["unacked_reached"] else ""
        unacked = "?" if limit["unacked"] is None else limit["unacked"]
        parts.append(f"unacked {unacked}/{limit['max_unacked']}{full}")
    for measure in ("length", "unacked"):
        mark = limit[f"{measure}_watermark"]
        if mark is not None:
            reached = " REACHED" if limit[f"{measure}_watermark_reached"] else ""
            parts.append(f"{measure} watermark {mark}{reached}")
    return ", ".join(parts)


def _table(rows: list[list[Any]]) -> list[str]:
    """Aligned columns: counts to the right, text to the left."""
    cells = [[_printable(str(cell)) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    numeric = [
        all(row[i].isdigit() or row[i] == "?" for row in cells[1:]) for i in range(len(widths))
    ]
    return [
        "  ".join(
            cell.rjust(w) if count else cell.ljust(w)
            for cell, w, count in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in cells
    ]


def _printable(text: str) -> str:
    """Names read from the broker (hosts, queues) as they can be shown: anyone who
    can write to the broker could put a terminal escape in them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _age(seconds: float) -> str:
    """``45s``, ``12m05s``, ``2h14m``, ``3d04h``: the two largest units."""
    whole = int(min(max(0.0, seconds), 1e9)) if math.isfinite(seconds) else 0
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
