"""Prometheus metrics for aioack workers: a hook, queue depths, and ways to serve them.

For example:

    metrics = PrometheusMetrics()
    worker = app.worker(hooks=[metrics])
    async with metrics.serve(9100, broker=app.broker, queues=worker.settings.queues):
        await worker.run()

or ``python -m aioack worker myproj.tasks:app --metrics-port 9100``, or
mounted in a FastAPI app: ``api.mount("/metrics", metrics.asgi_app())``.
Install ``aioack[prometheus]``. docs/observability.md lists every metric.

Each ``PrometheusMetrics`` has its own ``CollectorRegistry`` (not
prometheus_client's global one), so tests and several workers in one
process never collide; pass ``registry=`` to add aioack's metrics to a
registry of your own (one ``PrometheusMetrics`` per registry: a second
one's names collide, and prometheus_client refuses it with ValueError).

Why it is fast (measured in benchmarks/bench_metrics.py): the updates made
on every task are plain integer adds, turned into metric families only at
scrape time (``series``); rare events (leases, connection) use
prometheus_client's own objects.

Label values are bounded: the queue comes from the worker's own queues; the
task label is a registered task's name, else ``<undecodable>`` (the body
could not be decoded), ``<unknown>`` (no such task, or not in
``task_names``), or ``<other>`` once ``max_task_labels`` names were seen. A
publisher can never grow the number of series.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Container, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, make_asgi_app
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aioack._scope import TaskScope
from aioack.brokers.base import BrokerAdmin
from aioack.errors import ConfigurationError
from aioack.hooks import (
    ConnectionEvent,
    DeliveryEvent,
    FinishedEvent,
    Hook,
    LeaseEvent,
    SettledEvent,
    WatermarkEvent,
    WorkerEvent,
)
from aioack.observe.depths import QueueDepths
from aioack.observe.series import TaskSeries, check_bounds, families
from aioack.observe.serving import serve_http

__all__ = ["DURATION_BUCKETS_S", "OTHER", "UNDECODABLE", "UNKNOWN", "PrometheusMetrics"]

logger = logging.getLogger("aioack.observe")

#: Task label of a delivery whose body could not be decoded.
UNDECODABLE = "<undecodable>"
#: Task label of a message naming no registered task.
UNKNOWN = "<unknown>"
#: Task label once ``max_task_labels`` distinct names have been seen.
OTHER = "<other>"

#: Histogram buckets (seconds) for task durations and settle latencies.
DURATION_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    float("inf"),
)


class PrometheusMetrics(Hook, Collector):
    """A hook that keeps Prometheus metrics of a worker's tasks and deliveries.

    Its hook methods must all be called on one event loop's thread (one
    worker, or several on one loop): they are the only writers of its counts.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        task_names: Container[str] | None = None,
        max_task_labels: int = 1000,
        buckets: Sequence[float] = DURATION_BUCKETS_S,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._bounds = check_bounds(buckets)
        self._task_names = task_names
        self._max_task_labels = max_task_labels
        self._task_labels: set[str] = set()
        self._series: dict[tuple[str, str], TaskSeries] = {}
        self._received: dict[str, int] = {}
        self._running = 0
        self._held = 0
        self._depths: QueueDepths | None = None
        #: None until a worker reports: an API process without a worker exports no
        #: such gauge, rather than a 0 an alert would read as "disconnected".
        self._connected: int | None = None
        self._define_rare()
        self.registry.register(self)

    def _define_rare(self) -> None:
        """Events that are not once per task: prometheus_client's own objects."""
        r = self.registry
        self.redeliveries = Counter(
            "aioack_redeliveries",
            "Deliveries the broker had handed out before without a settle",
            ["queue"],
            registry=r,
        )
        self.lease_renewals = Counter(
            "aioack_lease_renewals", "Leases of held deliveries renewed", registry=r
        )
        self.leases_lost = Counter(
            "aioack_leases_lost",
            "Held deliveries this worker lost (lease taken over, channel closed); "
            "the broker redelivers them",
            ["queue"],
            registry=r,
        )
        self.watermark_reached = Gauge(
            "aioack_queue_watermark_reached",
            "1 while a queue's count (measure: length or unacked) is at or above its "
            "watermark, as this worker last sampled it",
            ["queue", "measure"],
            registry=r,
        )
        self.watermark_crossings = Counter(
            "aioack_queue_watermark_crossings",
            "Times a queue's count reached its watermark from below",
            ["queue", "measure"],
            registry=r,
        )

    def collect(self) -> Iterable[Metric]:
        """The once-per-task families, built now from the counts (a scrape)."""
        received = CounterMetricFamily(
            "aioack_tasks_received", "Deliveries received, before decoding", labels=["queue"]
        )
        for queue, count in self._received.copy().items():
            received.add_metric([queue], count)
        yield received
        yield from families(self._series.copy())
        if self._connected is not None:
            yield GaugeMetricFamily(
                "aioack_broker_connected",
                "1 while the worker can receive from its broker",
                self._connected,
            )
        yield GaugeMetricFamily("aioack_tasks_running", "Task functions running now", self._running)
        yield GaugeMetricFamily(
            "aioack_deliveries_held",
            "Deliveries this worker holds, received and not yet settled (unacked)",
            self._held,
        )

    # -- the hook: these four run once per task, on the worker's loop -------

    # Written out, not shared helpers: each call here is paid per task.

    def _new_series(self, key: tuple[str, str]) -> TaskSeries:
        series = self._series[key] = TaskSeries(self._bounds)
        return series

    def on_received(self, event: DeliveryEvent) -> None:
        self._held += 1
        received = self._received
        received[event.queue] = received.get(event.queue, 0) + 1
        if event.redelivered:
            self.redeliveries.labels(event.queue).inc()

    def on_started(self, event: DeliveryEvent) -> None:
        self._running += 1
        # Only a registered task starts: its name is a bounded label as it is.
        key = (event.task or UNKNOWN, event.queue)
        series = self._series.get(key) or self._new_series(key)
        series.started += 1

    def on_finished(self, event: FinishedEvent) -> None:
        self._running -= 1
        key = (event.task, event.queue)
        series = self._series.get(key) or self._new_series(key)
        finished, outcome = series.finished, event.outcome
        finished[outcome] = finished.get(outcome, 0) + 1
        series.duration.observe(event.duration_s)

    def on_settled(self, event: SettledEvent) -> None:
        self._held -= 1
        if event.lost:
            return  # nothing was sent: on_lost counted it, the broker redelivers it
        task = event.task
        if task not in self._task_labels:  # None, unknown, or seen for the first time
            task = self._task_label(task, event.reason)
        key = (task, event.queue)
        series = self._series.get(key) or self._new_series(key)
        settled, action = series.settled, (event.action, event.reason)
        settled[action] = settled.get(action, 0) + 1
        series.latency.observe(event.duration_s)
        if event.action == "retry":
            series.retries += 1

    def _task_label(self, task: str | None, reason: str) -> str:
        """A task name from the wire, as a label value that cannot grow without bound."""
        if task is None:
            return UNDECODABLE
        names = self._task_names
        if reason == "unknown_task" or (names is not None and task not in names):
            return UNKNOWN
        if len(self._task_labels) >= self._max_task_labels:
            return OTHER
        self._task_labels.add(task)
        return task

    def on_lease_renewed(self, event: LeaseEvent) -> None:
        if event.renewed > 0:
            self.lease_renewals.inc(event.renewed)

    def on_lost(self, event: DeliveryEvent) -> None:
        self.leases_lost.labels(event.queue).inc()

    def on_connection_lost(self, event: ConnectionEvent) -> None:
        self._connected = 0

    def on_connection_restored(self, event: ConnectionEvent) -> None:
        self._connected = 1

    def on_worker_started(self, event: WorkerEvent) -> None:
        self._connected = 1  # run() connected before it started consuming

    def on_watermark(self, event: WatermarkEvent) -> None:
        self.watermark_reached.labels(event.queue, event.measure).set(1 if event.above else 0)
        if event.above:
            self.watermark_crossings.labels(event.queue, event.measure).inc()

    # -- serving ------------------------------------------------------------

    def asgi_app(self) -> Callable[..., Any]:
        """An ASGI app serving this registry: ``api.mount("/metrics", metrics.asgi_app())``."""
        return make_asgi_app(self.registry)

    @contextlib.asynccontextmanager
    async def queue_depths(
        self, admin: BrokerAdmin, queues: Sequence[str], *, interval_s: float = 2.0
    ) -> AsyncIterator[QueueDepths]:
        """Export ``aioack_queue_messages`` for ``queues`` while inside (see ``depths``).

        The broker must be connected: a refresher task reads it every ``interval_s``.

        Raises:
            ConfigurationError: this registry already exports queue depths.
        """
        if self._depths is not None:
            raise ConfigurationError("these metrics already export queue depths")
        depths = self._depths = QueueDepths(admin, queues, interval_s=interval_s)
        self.registry.register(depths)
        try:
            async with TaskScope("metrics") as scope:
                scope.start(depths.run(), name="aioack-queue-depths")
                yield depths
        finally:
            self.registry.unregister(depths)
            self._depths = None

    @contextlib.asynccontextmanager
    async def serve(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        broker: BrokerAdmin | None = None,
        queues: Sequence[str] = (),
        interval_s: float = 2.0,
    ) -> AsyncIterator[tuple[str, int]]:
        """Serve ``/metrics`` over HTTP on ``host:port`` (0: any free port) while inside.

        Yields the address listened on. With ``broker``, queue depths of
        ``queues`` are exported too (the broker must be connected).

        Raises:
            ConfigurationError: the address cannot be listened on (in use, not local).
        """
        async with serve_http(self.registry, host, port) as address:
            logger.info("metrics: serving http://%s:%d/metrics", *address)
            if broker is None:
                yield address
            else:
                async with self.queue_depths(broker, queues, interval_s=interval_s):
                    yield address
