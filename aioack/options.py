"""Task options, named as in Celery. Validated once, at decoration time."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aioack._rate import Rate, parse_rate
from aioack.message import MAX_ATTEMPT, MAX_DELIVERY_COUNT

QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")

Seconds = Annotated[float, Field(gt=0)]


class TaskOptions(BaseModel):
    """How one task is acknowledged, retried and limited. Durations in seconds.

    Defaults differ from Celery's where Celery's would lose tasks:
    ``acks_late=True`` (Celery: False), ``retry_backoff=True`` (Celery: False),
    failures dead-lettered instead of dropped, ``delivery_limit`` (no Celery twin),
    and ``track_started=True`` (Celery: False).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(min_length=1, max_length=200)
    queue: str = "default"
    #: Ack after the task finished (True) or on receipt (False: a crash loses it).
    acks_late: bool = True
    #: Late ack only: a task failed for good is dead-lettered (True) or
    #: requeued (False) until ``delivery_limit``, then dead-lettered.
    acks_on_failure_or_timeout: bool = True
    #: A redelivered message (its earlier run was abandoned: worker killed,
    #: connection lost) runs again (True) or is dead-lettered (False).
    reject_on_worker_lost: bool = True
    #: Exceptions that trigger an automatic retry.
    autoretry_for: tuple[type[BaseException], ...] = ()
    #: Retries after the first attempt; None retries forever.
    max_retries: int | None = Field(default=3, ge=0, le=MAX_ATTEMPT - 1)
    #: True: exponential backoff from 1 s; a number: from that many seconds;
    #: False: always wait ``default_retry_delay``.
    retry_backoff: bool | Seconds = True
    retry_backoff_max: Seconds = 600.0
    #: Full jitter: each delay is drawn uniformly from [0, computed delay].
    retry_jitter: bool = True
    default_retry_delay: float = Field(default=180.0, ge=0)
    #: Cancel the run after this many seconds (a failure with reason ``timeout``).
    time_limit: Seconds | None = None
    #: Dead-letter a message delivered more than this many times (crash loops).
    delivery_limit: int = Field(default=10, ge=1, le=MAX_DELIVERY_COUNT)
    #: Effect-once: skip a run whose idempotency key already completed.
    idempotent: bool = False
    #: Store STARTED when a run starts (one result-backend write per run).
    #: Celery's default is False; ours is True so ``state()`` tells a queued
    #: run from a running one. Turn it off for short, high-rate tasks.
    track_started: bool = True
    #: At most this many runs at once per concurrency key, across all workers
    #: (docs/task-control.md). Without ``concurrency_key``: per task name.
    limit_concurrency: int | None = Field(default=None, ge=1, le=100_000)
    #: What a run's key is: the name of one of the task's parameters (its
    #: value is the key), or a callable given the run's arguments by name.
    concurrency_key: str | Callable[[dict[str, Any]], str | int] | None = None
    #: pydantic's strict mode for the arguments: ``"2"`` is no ``int`` (True),
    #: or the lax conversions (False). Either way a value that would not arrive
    #: unchanged through JSON is refused at the call site.
    strict_arguments: bool = True
    #: At most this many runs start per second, minute or hour, across every
    #: worker: "100/m", "10/s", "5/h", or a number per second (Celery's forms;
    #: docs/task-control.md). Checked here, at decoration time.
    rate_limit: str | float | None = None

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        return check_queue_name(value)

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate(cls, value: object) -> object:
        if value is not None:
            parse_rate(value)
        return value

    @property
    def rate(self) -> Rate | None:
        """``rate_limit`` parsed (valid: checked at decoration), or None."""
        return None if self.rate_limit is None else parse_rate(self.rate_limit)

    @field_validator("autoretry_for")
    @classmethod
    def _exception_types(
        cls, value: tuple[type[BaseException], ...]
    ) -> tuple[type[BaseException], ...]:
        for item in value:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise ValueError(f"autoretry_for takes exception classes, got {item!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskOptions:
        # A requeued message comes back flagged redelivered, like an abandoned
        # one: brokers (AMQP) cannot tell them apart. With both settings off, a
        # task would dead-letter its own requeues as worker_lost.
        if not self.reject_on_worker_lost and not self.acks_on_failure_or_timeout:
            raise ValueError(
                "reject_on_worker_lost=False with acks_on_failure_or_timeout=False would "
                "dead-letter every requeued failure as worker_lost; keep one of them True"
            )
        if self.concurrency_key is not None and self.limit_concurrency is None:
            raise ValueError(
                "concurrency_key without limit_concurrency limits nothing; add "
                "limit_concurrency=N (at most N runs at once per key)"
            )
        return self

    def retries_left(self, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1-based) may be followed by another."""
        return self.max_retries is None or attempt <= self.max_retries


def check_queue_name(value: str) -> str:
    if not QUEUE_NAME.match(value):
        raise ValueError(
            f"queue name {value!r} is not valid: use 1-200 of A-Z a-z 0-9 . _ : - "
            "starting with a letter or digit"
        )
    return value
