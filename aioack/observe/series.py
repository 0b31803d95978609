"""What the metrics hook counts per (task, queue), in plain Python, turned into families at scrape.

Why not prometheus_client's ``Counter`` and ``Histogram`` objects on the hot
path: each ``inc()`` takes a lock and each ``observe()`` walks the buckets
under one; with the six updates a task needs, the hook cost +7.2 us per
task against a budget of 5 (benchmarks/RESULTS.md, "Metrics"). Here an
update is a dict lookup and an integer add, and the exposition is still
prometheus_client's (``*MetricFamily`` objects from a ``Collector``).

Threads: one writer, the event loop the hooks run on; a scrape (on the HTTP
server's thread) copies each container whole (``dict.copy()``, ``list()``),
which no other thread can interleave with, so a scrape never sees a dict
change size under it. A histogram's count and sum may be one observation
apart in a scrape; the next one has both.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily


class Buckets:
    """A histogram's state: one count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, Prometheus's "le" (less or equal).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """The (le, cumulative count) pairs and the sum, read once."""
        counts, total_sum = list(self.counts), self.sum
        pairs, running = [], 0
        for bound, count in zip(self.bounds, counts, strict=True):
            running += count
            pairs.append((_le(bound), float(running)))
        return pairs, total_sum


class TaskSeries:
    """Counts of one (task, queue): runs started and finished, settles, retries, two histograms."""

    __slots__ = ("duration", "finished", "latency", "retries", "settled", "started")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.started = 0
        self.retries = 0
        #: By outcome.
        self.finished: dict[str, int] = {}
        #: By (action, reason).
        self.settled: dict[tuple[str, str], int] = {}
        self.duration = Buckets(bounds)
        self.latency = Buckets(bounds)


def check_bounds(buckets: Sequence[float]) -> tuple[float, ...]:
    """Sorted, distinct bucket bounds ending with +Inf.

    Raises:
        ValueError: none given, unsorted, or repeated.
    """
    bounds = tuple(float(b) for b in buckets)
    if not bounds or any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"histogram buckets must be increasing and distinct: {buckets!r}")
    return bounds if math.isinf(bounds[-1]) else (*bounds, math.inf)


def families(
    series: dict[tuple[str, str], TaskSeries],
) -> Iterable[CounterMetricFamily | HistogramMetricFamily]:
    """The per-task families, built from a copy of ``series`` taken at once."""
    started = CounterMetricFamily(
        "aioack_tasks_started", "Task runs started", labels=["task", "queue"]
    )
    finished = CounterMetricFamily(
        "aioack_tasks_finished",
        "Task runs ended, by outcome (succeeded, failed, timed_out, retry_requested, ...)",
        labels=["task", "queue", "outcome"],
    )
    settled = CounterMetricFamily(
        "aioack_tasks_settled",
        "Deliveries settled, by action (ack, retry, dead_letter, ...) and dead-letter reason",
        labels=["task", "queue", "action", "reason"],
    )
    retries = CounterMetricFamily(
        "aioack_retries", "Retries scheduled (a new attempt published)", labels=["task", "queue"]
    )
    duration = HistogramMetricFamily(
        "aioack_task_duration_seconds", "Seconds a task function ran", labels=["task", "queue"]
    )
    latency = HistogramMetricFamily(
        "aioack_settle_latency_seconds",
        "Seconds from a delivery's receipt to its settle (what the broker waited for)",
        labels=["task", "queue"],
    )
    for (task, queue), s in list(series.items()):
        labels = [task, queue]
        if s.started:
            started.add_metric(labels, s.started)
        for outcome, count in s.finished.copy().items():
            finished.add_metric([*labels, outcome], count)
        for (action, reason), count in s.settled.copy().items():
            settled.add_metric([*labels, action, reason], count)
        if s.retries:
            retries.add_metric(labels, s.retries)
        for family, buckets in ((duration, s.duration), (latency, s.latency)):
            pairs, total = buckets.cumulative()
            if pairs[-1][1]:
                family.add_metric(labels, pairs, total)
    return (started, finished, settled, retries, duration, latency)


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``+Inf``, ``0.005``, ``1.0``."""
    return "+Inf" if math.isinf(bound) else repr(bound)
