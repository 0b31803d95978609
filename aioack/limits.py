"""Queue limits: how much a queue may hold, and what a producer does when it is full.

With late ack the broker holds every task until it is settled; a queue that
nothing bounds grows until the broker runs out of memory or disk. A
``QueueLimit`` bounds one queue:

- ``max_length``: messages waiting to run (ready + delayed). A publish into a
  full queue is refused with ``QueueFull`` at once (``when_full="reject"``)
  or after waiting up to ``wait_timeout`` seconds for room
  (``when_full="wait"``). Never a silent drop.
- ``max_unacked``: messages workers hold at once, across all of them. A
  consumer claims nothing more from a queue at its ceiling, so what the
  broker holds unacked is bounded by this number and not by the size of the
  fleet; the backlog then waits as ready messages, which ``max_length``
  bounds. Only brokers that can count a queue's unacked messages atomically
  take it (not RabbitMQ: its ``basic.qos`` is per consumer).
- ``length_watermark`` / ``unacked_watermark``: a level that, when crossed,
  is logged and reported to hooks (``on_watermark``), for alerts before a
  limit bites.

The bookkeeping lives here, once: the settings and their checks
(``QueueLimit``, ``check_limits``), the wait policy (``publish_bounded``)
and the watermark rule (``Watermarks``). A broker only does the move: an
atomic "add if the queue has room, else ``QueueFull``", and where it can,
"claim only below ``max_unacked``". Settles (retry, deferral, hand-back,
requeue) are never refused: each replaces a message the queue already
holds, so the queue does not grow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aioack.errors import ConfigurationError, QueueFull
from aioack.hooks import WatermarkEvent
from aioack.options import check_queue_name
from aioack.urls import explain

logger = logging.getLogger("aioack.limits")

#: Largest count a limit takes (RabbitMQ's x-max-length is a signed 64-bit
#: number; a billion messages is past any sane queue).
MAX_COUNT = 1_000_000_000
#: Longest pause (seconds) between two tries of a publish waiting for room.
MAX_POLL_S = 0.25
#: First pause (seconds); doubled after each refusal up to MAX_POLL_S.
FIRST_POLL_S = 0.01

Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]


class QueueLimit(BaseModel):
    """The limits of one queue. Counts are messages; durations are seconds.

    ``App(queue_limits={"emails": QueueLimit(max_length=10_000, when_full="wait")})``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Messages waiting to run (ready + delayed) the queue may hold; None: no bound.
    max_length: Count | None = None
    #: Messages all workers together may hold unacked; None: no bound (the
    #: fleet's prefetch bounds it). Not on RabbitMQ.
    max_unacked: Count | None = None
    #: A publish into a full queue: ``reject`` raises QueueFull at once;
    #: ``wait`` tries again until ``wait_timeout``, then raises QueueFull.
    when_full: Literal["reject", "wait"] = "reject"
    #: ``when_full="wait"``: seconds a publish waits for room.
    wait_timeout: float = Field(default=10.0, gt=0, le=3600)
    #: Report (log, ``on_watermark``) when ready + delayed reaches this count.
    length_watermark: Count | None = None
    #: Report when the messages held unacked reach this count.
    unacked_watermark: Count | None = None

    @model_validator(mode="after")
    def _consistent(self) -> QueueLimit:
        if not any(
            (self.max_length, self.max_unacked, self.length_watermark, self.unacked_watermark)
        ):
            raise ValueError(
                "a QueueLimit needs at least one of max_length, max_unacked, "
                "length_watermark, unacked_watermark"
            )
        if self.when_full == "wait" and self.max_length is None:
            raise ValueError("when_full='wait' needs a max_length to wait for")
        if "wait_timeout" in self.model_fields_set and self.when_full != "wait":
            raise ValueError("wait_timeout applies only with when_full='wait'")
        _below("length_watermark", self.length_watermark, "max_length", self.max_length)
        _below("unacked_watermark", self.unacked_watermark, "max_unacked", self.max_unacked)
        return self


def _below(name: str, mark: int | None, limit_name: str, limit: int | None) -> None:
    if mark is not None and limit is not None and mark > limit:
        raise ValueError(
            f"{name} ({mark}) is above {limit_name} ({limit}): it could never be reached"
        )


def check_limits(limits: Mapping[str, QueueLimit | Mapping[str, Any]]) -> dict[str, QueueLimit]:
    """Validate ``queue -> QueueLimit`` (or a dict of its fields, e.g. from a config file).

    Raises:
        ConfigurationError: a bad queue name, an unknown field, a bad value.
    """
    if not isinstance(limits, Mapping):
        raise ConfigurationError(
            f"queue_limits takes a mapping of queue name -> QueueLimit, got {type(limits).__name__}"
        )
    checked: dict[str, QueueLimit] = {}
    for queue, limit in limits.items():
        try:
            if not isinstance(queue, str):
                raise ValueError(f"queue names are text, got {queue!r}")
            check_queue_name(queue)
        except ValueError as exc:
            raise ConfigurationError(f"queue_limits: {exc}") from None
        if isinstance(limit, QueueLimit):
            checked[queue] = limit
            continue
        try:
            checked[queue] = QueueLimit.model_validate(limit)
        except ValidationError as exc:
            raise ConfigurationError(explain(exc, QueueLimit, f"queue_limits[{queue!r}]")) from exc
    return checked


async def publish_bounded(
    publish: Callable[[], Awaitable[None]],
    queue: str,
    limit: QueueLimit | None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``publish``; while the queue is full, wait for room as ``limit`` says.

    ``when_full="reject"`` (or no limit): a refusal is raised as it came.
    ``when_full="wait"``: the publish is tried again, with pauses from
    FIRST_POLL_S doubling up to MAX_POLL_S, until it is taken or
    ``wait_timeout`` seconds have passed. Polling, not a notification: it
    works the same on every broker and across processes, and a refused try
    costs one round trip.

    Raises:
        QueueFull: still full (after the wait), with ``waited_s`` set.
        Whatever ``publish`` raises otherwise.
    """
    try:
        await publish()
        return
    except QueueFull:
        if limit is None or limit.when_full != "wait":
            raise
    started = clock()
    deadline, pause_s = started + limit.wait_timeout, FIRST_POLL_S
    logger.debug("queue %s is full: publish waits up to %.3gs", queue, limit.wait_timeout)
    while True:
        remaining_s = deadline - clock()
        if remaining_s <= 0:
            waited_s = clock() - started
            raise QueueFull(
                queue,
                limit.max_length,
                waited_s=waited_s,
                detail=f"still full after waiting {waited_s:.3g}s (wait_timeout)",
            )
        await asyncio.sleep(min(pause_s, remaining_s))
        pause_s = min(pause_s * 2, MAX_POLL_S)
        try:
            await publish()
            return
        except QueueFull:
            continue


class Watermarks:
    """Which queues are above their watermarks: each crossing is reported once.

    ``observe()`` is fed counts (by the worker's sampler, ``aioack.worker.watermarks``)
    and returns an event when a count reaches its watermark from below, and
    one when it falls back below it; nothing while it stays on one side.
    """

    def __init__(self, limits: Mapping[str, QueueLimit]) -> None:
        self._limits = {
            q: lim
            for q, lim in limits.items()
            if lim.length_watermark is not None or lim.unacked_watermark is not None
        }
        self._above: set[tuple[str, str]] = set()

    @property
    def queues(self) -> list[str]:
        """The queues that have a watermark."""
        return list(self._limits)

    def observe(self, queue: str, *, length: int, unacked: int) -> list[WatermarkEvent]:
        """Events for ``queue`` given its ready + delayed (``length``) and unacked counts."""
        limit = self._limits.get(queue)
        if limit is None:
            return []
        events = []
        for measure, count, mark, bound in (
            ("length", length, limit.length_watermark, limit.max_length),
            ("unacked", unacked, limit.unacked_watermark, limit.max_unacked),
        ):
            if mark is None:
                continue
            key, above = (queue, measure), count >= mark
            if above == (key in self._above):
                continue
            if above:
                self._above.add(key)
            else:
                self._above.discard(key)
            events.append(WatermarkEvent(queue, measure, count, mark, bound, above))
        return events
