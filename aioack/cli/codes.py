"""The process exit codes of ``aioack``, one table for every command.

``MEANINGS`` is what ``--help`` prints beside each code, and what docs/cli.md
says at more length (a test holds the two to the same codes).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of ``aioack`` (``python -m aioack``)."""

    OK = 0
    INTERNAL_ERROR = 1
    USAGE = 2
    CONFIG_ERROR = 3
    APP_NOT_FOUND = 4
    BROKER_UNAVAILABLE = 5
    FORCED_STOP = 6
    NOT_FOUND = 7
    ABORTED = 8
    QUEUE_FULL = 9
    SHUTDOWN_TIMEOUT = 10


#: One line per code: what happened, from the user's side.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done (a worker: its running tasks all finished, or --burst found it idle)",
    ExitCode.INTERNAL_ERROR: "a bug in aioack or the app: see the traceback",
    ExitCode.USAGE: "bad command line: the message says which argument",
    ExitCode.CONFIG_ERROR: "settings that cannot work (URL, login, hook): the message says what",
    ExitCode.APP_NOT_FOUND: "MODULE:APP could not be imported, or is not an aioack App",
    ExitCode.BROKER_UNAVAILABLE: "the broker or result backend could not be reached",
    ExitCode.FORCED_STOP: "a second signal cut the grace period short: running tasks requeued",
    ExitCode.NOT_FOUND: "what was asked for does not exist (a queue, a dead letter)",
    ExitCode.ABORTED: "not confirmed (dlq purge without --yes): nothing was done",
    ExitCode.QUEUE_FULL: "dlq replay stopped at a full queue: the rest stay dead letters",
    ExitCode.SHUTDOWN_TIMEOUT: "--shutdown-timeout ran out: the tasks still running were requeued",
}
