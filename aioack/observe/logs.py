"""Logs: one line per event, as text (greppable) or JSON (one object per line).

The worker's log calls for the events of a delivery carry structured fields
(``extra``): ``event`` (see docs/operations.md for the list), ``task``,
``task_id``, ``queue``, ``attempt``, ``delivery_count``, ``duration_s``,
``worker_id``, and per event ``action``, ``reason``, ``detail``,
``delay_s``, ``error``, ``traceback``. ``JsonFormatter`` writes them as one
JSON object per line; ``TextFormatter`` writes the message as one line (and a
traceback, when there is one, on the lines after it, as Python does).

Task arguments and return values are never logged unless a redactor is
given (``app.worker(log_values=...)`` / ``--log-values``): it sees each
value and returns what may be written (``None`` leaves it out).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Literal

#: Fields a log record may carry (``extra=``) that formatters write out.
FIELDS = (
    "event",
    "task",
    "task_id",
    "queue",
    "attempt",
    "delivery_count",
    "redelivered",
    "duration_s",
    "worker_id",
    "action",
    "reason",
    "detail",
    "delay_s",
    "broker",
    "results",
    "queues",
    "concurrency",
    "prefetch",
    "forced",
    "arguments",
    "result",
    "error",
)

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        traceback = record.__dict__.get("traceback")
        if record.exc_info:
            traceback = self.formatException(record.exc_info)
        if traceback:
            line["traceback"] = traceback
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message``, one line per event; a traceback follows it,
    every line of it indented.

    The indent is what keeps a log greppable and unforgeable: an exception's
    message is printed verbatim in its traceback, and a task's message may
    carry a newline and text looking like a whole log line. Indented, no
    continuation line can start like an event line (with a time).
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = self.formatMessage(self._prepared(record))
        traceback = record.__dict__.get("traceback")
        if record.exc_info:
            traceback = self.formatException(record.exc_info)
        if traceback:
            indented = "\n".join(f"    {part}" for part in str(traceback).rstrip().splitlines())
            line = f"{line}\n{indented}"
        return line

    def _prepared(self, record: logging.LogRecord) -> logging.LogRecord:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        return record


def configure(level: str | int = "INFO", fmt: LogFormat = "text") -> None:
    """Send every log record to stderr in ``fmt``: what ``--log-format`` does."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
