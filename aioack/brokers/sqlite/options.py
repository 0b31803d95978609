"""SQLite broker options: the file from the URL's path, the rest from its query. Seconds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aioack._sqlite import url_path
from aioack.urls import parse_options


class SQLiteOptions(BaseModel):
    """Every knob of the SQLite broker, in seconds where it is a duration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A delivery held this long without renewal is taken back for another worker.
    #: The worker renews running tasks' leases, so it only bounds how long a
    #: crashed worker's tasks wait.
    visibility_timeout: float = Field(default=30.0, gt=0)
    #: How often an idle consumer looks at the file for work other processes
    #: added (a change counter read, not a query); bounds the idle latency.
    poll_interval: float = Field(default=0.02, gt=0, le=5)
    #: How long a write waits for another process's transaction before failing.
    busy_timeout: float = Field(default=5.0, gt=0)
    #: full: every commit is on disk before it returns (a power cut loses
    #: nothing acknowledged); normal: faster, but the last commits can be lost
    #: on a power cut (never on a process crash).
    synchronous: Literal["full", "normal"] = "full"


def parse_url(url: str, options: Mapping[str, object]) -> tuple[str, SQLiteOptions]:
    """The database file's path and validated options.

    ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db``, or
    ``sqlite://`` for ``aioack.db`` in the current directory.

    Raises:
        ConfigurationError: a host in the URL, an in-memory database, or a bad option.
    """
    _, parsed = parse_options(url, options, SQLiteOptions, what="SQLite broker")
    return url_path(url), parsed
