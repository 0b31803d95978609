"""Queue depths for Prometheus: read from the broker by a refresher task, served from a cache.

A Prometheus scrape is synchronous (``Collector.collect()`` is a plain
method, called from the HTTP server's thread, or from an ASGI handler on the
event loop), while ``BrokerAdmin.stats()`` is a coroutine on the worker's
loop. Blocking a scrape on the loop would tie the scrape to the broker's
health and, on the loop's own thread, deadlock. So the two are decoupled:

- a refresher task, owned by a ``TaskScope``, reads every queue's stats
  every ``interval_s`` seconds (each round bounded by ``timeout_s``) and
  swaps in a new snapshot;
- ``collect()`` only reads the latest snapshot (one reference, swapped
  whole: safe from any thread) and says how old it is.

So the broker sees ``len(queues)`` stats calls per interval, however many
scrapes come; a scrape never waits on the broker. When the broker cannot be
read, the last figures stay, ``aioack_queue_stats_age_seconds`` grows and
``aioack_queue_stats_errors_total`` counts the failed rounds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aioack.brokers.base import BrokerAdmin, QueueStats
from aioack.errors import BrokerError

logger = logging.getLogger("aioack.observe")

#: The states a queue's messages are counted in (``QueueStats`` fields).
STATES = ("ready", "delayed", "unacked", "dead")


class QueueDepths(Collector):
    """``aioack_queue_messages{queue,state}``, from a cache a refresher task keeps fresh."""

    def __init__(
        self,
        admin: BrokerAdmin,
        queues: Sequence[str],
        *,
        interval_s: float = 2.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s must be > 0 seconds")
        self.admin = admin
        self.queues = tuple(dict.fromkeys(queues))
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._clock = clock
        #: (read at, stats by queue): replaced whole, never changed in place.
        self._snapshot: tuple[float, dict[str, QueueStats]] | None = None
        #: Until a first read succeeds, the figures' age counts from here: a
        #: broker down from the start shows as stale, not as no figure at all.
        self._since = clock()
        self._errors = 0
        self._failing = False

    async def refresh(self) -> None:
        """Read every queue's stats now and swap them in, all or none.

        Raises:
            BrokerError, TimeoutError: the broker could not be read within ``timeout_s``.
        """
        fresh: dict[str, QueueStats] = {}
        async with asyncio.timeout(self.timeout_s):
            for queue in self.queues:
                fresh[queue] = await self.admin.stats(queue)
        self._snapshot = (self._clock(), fresh)

    async def run(self) -> None:
        """Refresh every ``interval_s`` until cancelled; a failed round keeps the old figures."""
        while True:
            try:
                await self.refresh()
            except (BrokerError, TimeoutError) as exc:
                self._errors += 1
                if not self._failing:  # once per outage, not every interval
                    logger.warning("metrics: cannot read queue depths (%s); retrying", exc)
                self._failing = True
            else:
                if self._failing:
                    logger.info("metrics: queue depths readable again")
                self._failing = False
            await asyncio.sleep(self.interval_s)

    def describe(self) -> Iterable[Metric]:
        """The families, without samples (the registry checks names with it)."""
        return _families()

    def collect(self) -> Iterable[Metric]:
        messages, age, errors, limits = families = _families()
        errors.add_metric([], self._errors)
        for queue, limit in self.admin.limits.items():
            if queue in self.queues:
                for kind in LIMIT_KINDS:
                    level = getattr(limit, kind)
                    if level is not None:
                        limits.add_metric([queue, kind], level)
        snapshot = self._snapshot  # one read: the refresher may swap it meanwhile
        if snapshot is not None:
            read_at, stats = snapshot
            for queue, counts in stats.items():
                for state in STATES:
                    messages.add_metric([queue, state], getattr(counts, state))
            age.add_metric([], max(0.0, self._clock() - read_at))
        else:
            age.add_metric([], max(0.0, self._clock() - self._since))
        return families


#: The levels of a QueueLimit exported as ``aioack_queue_limit{kind}``.
LIMIT_KINDS = ("max_length", "max_unacked", "length_watermark", "unacked_watermark")


def _families() -> tuple[
    GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily, GaugeMetricFamily
]:
    return (
        GaugeMetricFamily(
            "aioack_queue_messages",
            "Messages in a queue by state (ready, delayed, unacked, dead), "
            "read from the broker every few seconds",
            labels=["queue", "state"],
        ),
        GaugeMetricFamily(
            "aioack_queue_stats_age_seconds",
            "Seconds since aioack_queue_messages was last read from the broker",
        ),
        CounterMetricFamily(
            "aioack_queue_stats_errors",
            "Rounds of reading queue depths that failed (broker unreachable, too slow)",
        ),
        GaugeMetricFamily(
            "aioack_queue_limit",
            "A queue's configured limit or watermark (App(queue_limits=...)), by kind: "
            "max_length, max_unacked, length_watermark, unacked_watermark",
            labels=["queue", "kind"],
        ),
    )
