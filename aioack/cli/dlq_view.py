"""How ``dlq`` shows dead letters: a table for people, JSON for machines.

Everything in a letter came from the wire or from a task's exception, so it
is hostile: before it reaches a terminal, every character that is not
printable (an escape sequence, a carriage return, a bidi override) is shown
as an escape instead, and table cells are rich ``Text`` (never markup, so a
``[red]`` in an error message is printed, not obeyed).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from aioack.brokers import DeadLetter
from aioack.brokers.deadletters import letter_time

#: How much of a body ``show`` prints (the rest is counted, not shown).
BODY_SHOWN_BYTES = 64 * 1024
#: How much of a letter's error a table cell holds.
ERROR_CELL_CHARS = 200
#: What a letter's time or age shows when it is not known.
UNKNOWN = "unknown"


def safe(text: str) -> str:
    """``text`` with every non-printable character but newline and tab escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str | None, limit: int = ERROR_CELL_CHARS) -> str:
    """The first line of ``text``, escaped and clipped, marked when there was more."""
    if not text:
        return ""
    lines = text.strip().splitlines() or [""]
    first = safe(lines[0])
    more = len(lines) > 1 or len(first) > limit
    return first[:limit] + (" …" if more else "")


def letters(count: int) -> str:
    """``1 dead letter``, ``2 dead letters``."""
    return f"{count} dead letter{'' if count == 1 else 's'}"


def age(seconds: float | None) -> str:
    """``45s``, ``5m30s``, ``3h12m``, ``2d3h``: two units at most; ``unknown`` when
    the letter's time is (or when it is no finite number: never an exception)."""
    if seconds is None or not math.isfinite(seconds):
        return UNKNOWN
    whole = max(int(seconds), 0)
    for unit_s, unit, sub_s, sub in ((86400, "d", 3600, "h"), (3600, "h", 60, "m")):
        if whole >= unit_s:
            rest = (whole % unit_s) // sub_s
            return f"{whole // unit_s}{unit}" + (f"{rest}{sub}" if rest else "")
    if whole >= 60:
        return f"{whole // 60}m" + (f"{whole % 60}s" if whole % 60 else "")
    return f"{whole}s"


def letter_json(letter: DeadLetter, now: float, *, full: bool = False) -> dict[str, Any]:
    """A letter as JSON-ready data; ``full`` adds its traceback and body (text when the
    body is UTF-8, else null; always as base64 too, byte for byte)."""
    stamp = letter_time(letter.dead_lettered_at)  # however the letter was made: valid JSON
    age_s = _age_s(letter, now)
    data: dict[str, Any] = {
        "id": letter.id,
        "queue": letter.queue,
        "reason": letter.reason,
        "task": letter.task,
        "message_id": letter.message_id,
        "attempt": letter.attempt,
        "delivery_count": letter.delivery_count,
        # null when unknown: the broker held no readable time (see letter_time).
        "dead_lettered_at": stamp,
        "age_s": None if age_s is None else round(age_s, 3),
        "error": letter.error,
        "detail": letter.detail,
    }
    if full:
        try:
            text: str | None = letter.body.decode()
        except UnicodeDecodeError:
            text = None
        data |= {
            "traceback": letter.traceback,
            "body": text,
            "body_base64": base64.b64encode(letter.body).decode(),
        }
    return data


def dumps(data: object) -> str:
    # ensure_ascii: no raw control character (or anything else) reaches a terminal.
    # allow_nan=False: NaN and Infinity are no JSON; a reader would choke on them.
    return json.dumps(data, indent=2, ensure_ascii=True, allow_nan=False)


def console(*, stderr: bool = False) -> Console:
    """A console that leaves text alone: no highlighting, no emoji codes; wide when
    not a terminal, so piped tables keep their ids whole."""
    out = Console(stderr=stderr, highlight=False, emoji=False)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, emoji=False, width=160)
    return out


def letters_table(letters: Sequence[DeadLetter], now: float, *, with_queue: bool) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", no_wrap=True)
    if with_queue:
        table.add_column("QUEUE", no_wrap=True)
    table.add_column("AGE", justify="right", no_wrap=True)
    table.add_column("REASON", no_wrap=True)
    table.add_column("TASK", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("ATTEMPT", justify="right", no_wrap=True)
    table.add_column("ERROR", overflow="ellipsis", no_wrap=True)
    for letter in letters:
        cells = [safe(letter.id or "")]
        if with_queue:
            cells.append(safe(letter.queue))
        cells += [
            age(_age_s(letter, now)),
            safe(letter.reason),
            safe(letter.task or "-"),
            "-" if letter.attempt is None else str(letter.attempt),
            one_line(letter.error or letter.detail),
        ]
        table.add_row(*(Text(cell) for cell in cells))
    return table


def describe(letter: DeadLetter, now: float) -> str:
    """The whole letter as text: its fields, its traceback, its body."""
    fields = [
        ("id", letter.id or ""),
        ("queue", letter.queue),
        ("reason", letter.reason),
        ("task", letter.task or "- (the body is no aioack message)"),
        ("message id", letter.message_id or "-"),
        ("attempt", "-" if letter.attempt is None else str(letter.attempt)),
        ("deliveries", str(letter.delivery_count)),
        ("dead-lettered", _when(letter, now)),
        ("error", letter.error or "-"),
        ("detail", letter.detail or "-"),
    ]
    width = max(len(name) for name, _ in fields) + 2
    # Continuation lines (a multi-line error) line up under the first.
    lines = [
        f"{name + ':':<{width}}" + safe(value).replace("\n", "\n" + " " * width)
        for name, value in fields
    ]
    lines += ["", "traceback:", safe(letter.traceback.rstrip()) if letter.traceback else "-"]
    lines += ["", f"body ({len(letter.body)} bytes):", body_text(letter.body)]
    return "\n".join(lines)


def _when(letter: DeadLetter, now: float) -> str:
    """``2024-11-28T10:40:01+00:00 (2h5m ago)``, or why it is not known."""
    stamp = letter_time(letter.dead_lettered_at)
    if stamp is None:
        return f"{UNKNOWN} (the broker holds no readable time for this letter)"
    when = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
    return f"{when} ({age(_age_s(letter, now))} ago)"


def _age_s(letter: DeadLetter, now: float) -> float | None:
    """The letter's age by the one rule (``letter_time``), whoever made the letter."""
    stamp = letter_time(letter.dead_lettered_at)
    return None if stamp is None else max(0.0, now - stamp)


def body_text(body: bytes) -> str:
    """A JSON body indented; any other body escaped; a body over BODY_SHOWN_BYTES clipped."""
    shown, cut = body[:BODY_SHOWN_BYTES], len(body) - BODY_SHOWN_BYTES
    more = f"\n... ({cut} more bytes not shown; --json has them all)" if cut > 0 else ""
    if cut <= 0:
        try:
            return safe(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
        except (ValueError, RecursionError):
            pass
    # Bytes that are not UTF-8 show as \xNN: readable, and nothing raw reaches the terminal.
    return safe(shown.decode("utf-8", "backslashreplace")) + more
