"""RateGate: a task's runs start at most ``rate_limit`` often, across every worker.

Before a run of a rate-limited task starts, the gate takes a token of the
task from the result backend (``reserve_rate``: GCRA, atomic, by the
backend's clock; see ``aioack/results/rates.py``). A token that is free now
lets the run start. A later one is *booked* for this message, and the
delivery goes back to the broker until then (DEFER: not an attempt, no
worker slot or unacked message held meanwhile); when it comes back it takes
its booked token. Many deliveries arriving at once thus leave one interval
apart and come back one at a time, instead of all racing for the next token.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aioack._rate import Rate
from aioack.decide import Action, ActionKind
from aioack.errors import BrokerError
from aioack.results.base import ResultBackend
from aioack.worker.needs import require_backend_method

if TYPE_CHECKING:
    from aioack.task import Task
    from aioack.worker.runner import Job

logger = logging.getLogger("aioack.worker")

#: The longest single deferral (seconds). A token further off is waited for
#: in several hops: one that comes back early keeps its booking and waits the rest.
MAX_DEFER_S = 3_600.0
REASON = "rate_limited"


class RateGate:
    """Takes each run's token of its task's rate limit before the run starts."""

    def __init__(self, backend: ResultBackend | None, *, busy_delay_s: float) -> None:
        self.backend = backend
        self._busy_delay_s = busy_delay_s
        #: Parsed once per task: a delivery costs one backend round trip, no parsing.
        self._rates: dict[str, Rate | None] = {}

    def check(self, tasks: list[Task[Any, Any]]) -> None:
        """Raises ConfigurationError when a rate-limited task has no backend to keep tokens."""
        limited = [t.name for t in tasks if t.options.rate_limit is not None]
        require_backend_method(self.backend, limited, "rate_limit", "reserve_rate", "rate limits")

    async def admit(self, job: Job) -> Action | None:
        """None: the run may start now. Otherwise the DEFER that sends it back until its token."""
        task = job.task
        rate = self._rates.get(task.name, ...)
        if rate is ...:
            rate = self._rates[task.name] = task.options.rate
        if rate is None or self.backend is None:
            return None
        try:
            wait_s = await self.backend.reserve_rate(
                task.name, job.context.id, rate.interval_s, rate.late_s
            )
        except BrokerError as exc:
            logger.warning("task %s: rate limit unreachable (%s); later", job.held.label, exc)
            return Action(ActionKind.DEFER, delay_s=self._busy_delay_s, reason=REASON)
        if wait_s <= 0:
            return None
        logger.info("task %s: rate limit %s; its token is in %.3fs", job.held.label, rate, wait_s)
        return Action(ActionKind.DEFER, delay_s=min(wait_s, MAX_DEFER_S), reason=REASON)
