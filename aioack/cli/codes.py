"""The process exit codes of ``python -m aioack``, one table for every command."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of ``python -m aioack``."""

    OK = 0  #: done (a worker stopped cleanly: signal drained, or --burst found the queues empty)
    INTERNAL_ERROR = 1  #: a bug in aioack or the app: see the traceback
    USAGE = 2  #: bad command line
    CONFIG_ERROR = 3  #: settings that cannot work: the message says what to change
    APP_NOT_FOUND = 4  #: the module:app could not be imported or is not an App
    BROKER_UNAVAILABLE = 5  #: the broker or the result backend could not be reached
    FORCED_STOP = 6  #: a second signal cut the grace period short
    NOT_FOUND = 7  #: what was asked for does not exist (a queue, a dead letter)
    ABORTED = 8  #: the user did not confirm (dlq purge without --yes): nothing was done
    QUEUE_FULL = 9  #: dlq replay stopped at a full queue (max_length): the rest stay dead letters
