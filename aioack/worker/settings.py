"""Worker settings: validated at construction, so a typo or an impossible value fails at start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aioack.message import DEFAULT_MAX_MESSAGE_BYTES
from aioack.options import check_queue_name

#: Decides what of a task's arguments or return value may be logged:
#: (task name, "arguments" or "result", the JSON value) -> what to log, or None.
Redactor = Callable[[str, str, Any], Any]

#: Seconds a stopping worker still gives closing steps (consumer, connection)
#: after its grace deadline, so a stop is bounded by shutdown_timeout + this.
CLOSE_ALLOWANCE_S = 1.0

#: The most tasks one worker runs at once, and deliveries it holds.
MAX_CONCURRENCY = 100_000
MAX_PREFETCH = 100_000


def default_prefetch(concurrency: int) -> int:
    """Two deliveries held per task slot, so the next run never waits for a
    round trip; within bounds, so a bad concurrency is the only error shown."""
    return min(max(1, 2 * concurrency), MAX_PREFETCH)


class WorkerSettings(BaseModel):
    """How one worker consumes. Durations in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queues: list[str] = Field(min_length=1)
    concurrency: int = Field(default=10, ge=1, le=MAX_CONCURRENCY)
    prefetch: int = Field(default=20, ge=1, le=MAX_PREFETCH)
    #: Seconds running tasks get to finish after a stop, before they are
    #: cancelled and handed back.
    shutdown_timeout: float = Field(default=30.0, ge=0)
    #: Cancel a run whose delivery this worker lost (lease, connection).
    cancel_on_lost_delivery: bool = True
    #: Longest wait (seconds) for one delivery before the loop checks its state.
    poll_interval: float = Field(default=1.0, gt=0)
    #: A body over this many bytes is dead-lettered ``too_large`` (the App's).
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1)
    #: Seconds an effect-once claim stays held by a run that stopped renewing it.
    idempotency_lease: float = Field(default=30.0, gt=0)
    #: Seconds between the worker's records for ``inspect``; a record ages out
    #: after three of them (a dead worker disappears from the list).
    announce_interval: float = Field(default=5.0, gt=0)

    @field_validator("queues")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return [check_queue_name(q) for q in value]
