"""``app.periodic(...)``: turning a declaration into a checked ``Schedule``.

Everything is checked here, when the schedule is declared: the cron
expression, the time zone, the interval, the policy, the name, and the
arguments against the task's signature (as ``delay()`` checks them), so a
bad schedule fails at import, not at its first tick in a worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from aioack.errors import ConfigurationError, InvalidArguments
from aioack.options import check_queue_name
from aioack.periodic.schedule import Missed, Schedule, check_schedule
from aioack.task import Task

#: The longest ``expires`` of a periodic run: 30 days, in seconds.
MAX_EXPIRES_S = 30 * 86_400.0


def new_schedule(
    task: Task[Any, Any],
    *,
    cron: str | None,
    every: float | None,
    tz: str | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    name: str | None,
    missed: str,
    queue: str | None,
    expires: float | None,
    taken: Mapping[str, Schedule],
) -> Schedule:
    """A checked schedule of ``task``.

    Raises:
        ConfigurationError: a bad cron expression, time zone, interval, policy,
            name, queue, ``expires`` or arguments; a name already taken.
    """
    label = name if name is not None else task.name
    checked_cron, every_s, zone = check_schedule(label, cron, every, tz, missed)
    where = f"periodic schedule {label!r}"
    if label in taken:
        raise ConfigurationError(
            f"{where} is declared twice (task {taken[label].task}); give each schedule of a "
            "task its own name=..."
        )
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ConfigurationError(f"{where}: args must be a list or tuple, not {args!r}")
    try:
        wire_args, wire_kwargs = task.signature.to_wire(tuple(args), dict(kwargs or {}))
    except (InvalidArguments, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: arguments do not fit {task.name}: {exc}") from exc
    try:
        target = check_queue_name(queue) if queue is not None else task.options.queue
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc
    return Schedule(
        name=label,
        task=task.name,
        queue=target,
        cron=checked_cron,
        every_s=every_s,
        tz=zone,
        args=wire_args,
        kwargs=wire_kwargs,
        missed=cast(Missed, missed),
        expires_s=_check_expires(where, expires),
    )


def _check_expires(where: str, expires: float | None) -> float | None:
    if expires is None:
        return None
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise ConfigurationError(f"{where}: expires must be a number of seconds, not {expires!r}")
    if not 0 < expires <= MAX_EXPIRES_S or math.isnan(expires):
        raise ConfigurationError(
            f"{where}: expires={expires!r} must be > 0 and at most {MAX_EXPIRES_S:.0f} "
            "seconds (30 days) after the tick"
        )
    return float(expires)
