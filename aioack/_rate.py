"""Rate limits, the part without I/O: reading ``rate_limit=`` and the timings it sets.

``@app.task(rate_limit="100/m")`` lets runs of the task start at most that
often across every worker, evenly spaced (one every 0.6 s here): the worker
takes a token from the result backend before each run (docs/task-control.md,
"Rate limits"). Here only the parsing, so a bad rate fails at decoration time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: Seconds in each unit Celery's rate strings take.
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: The most runs per second a rate may allow, and the fewest (one a day).
MAX_PER_SECOND = 100_000.0
MIN_PER_SECOND = 1 / 86_400.0
#: A delivery may come back this early (seconds) and still take its token:
#: brokers round delays to whole milliseconds.
EARLY_S = 0.002

_FORM = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*([smh]))?\s*$")

ACCEPTED = (
    'write it as "N/s", "N/m" or "N/h" (N runs per second, minute or hour; N a '
    'positive number, e.g. "100/m" or "0.5/s"), or a number of runs per second '
    "(10 or 2.5: Celery's form)"
)


@dataclass(frozen=True, slots=True)
class Rate:
    """One token every ``interval_s`` seconds, as the user wrote it."""

    per_period: float
    period_s: float

    @property
    def interval_s(self) -> float:
        return self.period_s / self.per_period

    @property
    def late_s(self) -> float:
        """How late a deferred delivery may come back and still take its booked token.

        Later, it books a new one (the old token is lost: fewer runs, never
        more). A tenth of the period bounds what late tokens add to any
        window to a tenth of the rate; two intervals, so a slow rate's
        deliveries are not sent round again for a few milliseconds' delay.
        """
        return max(self.period_s / 10, 2 * self.interval_s)

    def __str__(self) -> str:
        unit = next(u for u, s in UNITS.items() if s == self.period_s)
        return f"{self.per_period:g}/{unit}"


def parse_rate(value: object) -> Rate:
    """A ``rate_limit`` option as a Rate.

    Raises:
        ValueError: not one of the accepted forms, not positive, or outside
            one a day to 100,000 a second; the message says what is accepted.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"rate_limit={value!r} is not a rate: {ACCEPTED}")
    if isinstance(value, str):
        match = _FORM.match(value)
        if match is None:
            raise ValueError(f"rate_limit={value!r} is not a rate: {ACCEPTED}")
        per_period, period_s = float(match[1]), UNITS[match[2] or "s"]
    else:
        per_period, period_s = float(value), 1.0
    if not math.isfinite(per_period) or per_period <= 0:
        raise ValueError(f"rate_limit={value!r} must allow more than 0 runs: {ACCEPTED}")
    per_second = per_period / period_s
    if not MIN_PER_SECOND <= per_second <= MAX_PER_SECOND:
        raise ValueError(
            f"rate_limit={value!r} is {per_second:g} runs a second: use one a day "
            f"(1/86400 a second) to {MAX_PER_SECOND:,.0f} a second"
        )
    return Rate(per_period, period_s)
