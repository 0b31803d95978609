"""The metrics hook's parts, without a broker: bounded labels, histograms, the depth cache, serving."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import httpx
import pytest
from prometheus_client import generate_latest

from aioack.brokers.base import BrokerAdmin, LetterPass, QueueStats
from aioack.errors import BrokerUnavailable, ConfigurationError
from aioack.hooks import DeliveryEvent, FinishedEvent, SettledEvent, WatermarkEvent
from aioack.limits import QueueLimit
from aioack.observe.metrics import OTHER, UNDECODABLE, UNKNOWN, PrometheusMetrics
from aioack.observe.series import check_bounds
from tests.observe.scrape import parse, scrape, total, value
from tests.support import wait_until


def _settle(metrics: PrometheusMetrics, task: str | None, reason: str = "failed") -> None:
    metrics.on_received(DeliveryEvent("q", 1, False))
    metrics.on_settled(SettledEvent("q", "dead_letter", task, "id", 1, 1, reason))


def _task_labels(metrics: PrometheusMetrics) -> set[str]:
    s = parse(generate_latest(metrics.registry).decode())
    return {
        dict(items)["task"]
        for (name, items), _ in s.items()
        if name == "aioack_tasks_settled_total"
    }


def test_task_names_from_the_wire_cannot_grow_the_label_set() -> None:
    metrics = PrometheusMetrics(max_task_labels=3)
    _settle(metrics, None, "malformed")
    for i in range(100):  # a publisher inventing task names
        _settle(metrics, f"no.such.{i}", "unknown_task")
    for i in range(10):  # names that passed the registry, past the cap
        _settle(metrics, f"t{i}")
    assert _task_labels(metrics) == {UNDECODABLE, UNKNOWN, "t0", "t1", "t2", OTHER}
    s = parse(generate_latest(metrics.registry).decode())
    assert total(s, "aioack_tasks_settled_total", task=UNKNOWN) == 100
    assert total(s, "aioack_tasks_settled_total", task=OTHER) == 7


def test_only_the_registered_names_are_labels_when_given() -> None:
    metrics = PrometheusMetrics(task_names={"known"})
    _settle(metrics, "known")
    _settle(metrics, "stranger", "delivery_limit")
    assert _task_labels(metrics) == {"known", UNKNOWN}


def test_a_lost_settle_is_counted_as_lost_not_settled() -> None:
    metrics = PrometheusMetrics()
    metrics.on_received(DeliveryEvent("q", 1, False))
    metrics.on_lost(DeliveryEvent("q", 1, False, "t", "id", 1))
    metrics.on_settled(SettledEvent("q", "ack", "t", "id", 1, lost=True))
    s = parse(generate_latest(metrics.registry).decode())
    assert value(s, "aioack_leases_lost_total", {"queue": "q"}) == 1
    assert total(s, "aioack_tasks_settled_total") == 0
    assert value(s, "aioack_deliveries_held") == 0


def test_histogram_buckets_are_cumulative_with_le_bounds() -> None:
    metrics = PrometheusMetrics(buckets=[0.1, 1.0])
    for duration_s in (0.05, 0.1, 0.5, 5.0):
        metrics.on_started(DeliveryEvent("q", 1, False, "t", "id", 1))
        metrics.on_finished(FinishedEvent("t", "id", "q", 1, "succeeded", duration_s))
    s = parse(generate_latest(metrics.registry).decode())
    labels = {"task": "t", "queue": "q"}
    buckets = {
        le: value(s, "aioack_task_duration_seconds_bucket", {**labels, "le": le})
        for le in ("0.1", "1.0", "+Inf")
    }
    assert buckets == {"0.1": 2, "1.0": 3, "+Inf": 4}  # 0.1 is in le="0.1"
    assert value(s, "aioack_task_duration_seconds_sum", labels) == pytest.approx(5.65)
    with pytest.raises(ValueError, match="increasing"):
        check_bounds([1.0, 0.5])


def test_two_metrics_objects_in_one_process_do_not_collide() -> None:
    a, b = PrometheusMetrics(), PrometheusMetrics()
    a.on_received(DeliveryEvent("q", 1, False))
    s = parse(generate_latest(b.registry).decode())
    assert value(s, "aioack_tasks_received_total", {"queue": "q"}) == 0


class FlakyAdmin(BrokerAdmin):
    """Counts that can be made to fail, as a broker going away does."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    async def stats(self, queue: str) -> QueueStats:
        self.calls += 1
        if self.down:
            raise BrokerUnavailable("gone")
        return QueueStats(ready=self.calls, delayed=0, unacked=0, dead=0)

    async def has_queue(self, queue: str) -> bool:
        return True

    async def _letter_pass(self, queue: str, batch_size: int) -> LetterPass:
        raise AssertionError("queue depths never read dead letters")

    async def delete(self, queues: Sequence[str]) -> None:
        return None


async def test_scrapes_read_the_cache_and_never_the_broker() -> None:
    admin, metrics = FlakyAdmin(), PrometheusMetrics()
    async with metrics.queue_depths(admin, ["q"], interval_s=30):
        await wait_until(lambda: admin.calls == 1, 5, message="the first refresh")
        for _ in range(20):
            generate_latest(metrics.registry)
        assert admin.calls == 1, "a scrape reached the broker"


async def test_a_failed_refresh_keeps_the_last_depths_and_counts_the_error() -> None:
    admin, metrics = FlakyAdmin(), PrometheusMetrics()
    async with metrics.queue_depths(admin, ["q"], interval_s=0.02) as depths:
        await wait_until(lambda: admin.calls >= 2, 5, message="two refreshes")
        admin.down = True
        await wait_until(lambda: depths._errors >= 2, 5, message="failed refreshes")
        s = parse(generate_latest(metrics.registry).decode())
        assert value(s, "aioack_queue_messages", {"queue": "q", "state": "ready"}) >= 2
        assert value(s, "aioack_queue_stats_errors_total") >= 2
        with pytest.raises(ConfigurationError, match="already"):
            async with metrics.queue_depths(admin, ["q"]):
                pass
    # Left: the collector is gone from the registry, and no refresher is left running.
    s = parse(generate_latest(metrics.registry).decode())
    assert not any(name.startswith("aioack_queue_") for name, _ in s)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "aioack-queue-depths"]


async def test_serve_listens_then_frees_its_port() -> None:
    metrics = PrometheusMetrics()
    async with metrics.serve(0) as (host, port), httpx.AsyncClient() as client:
        s = await scrape(client, f"http://{host}:{port}/metrics")
        # No worker has reported: no gauge (a 0 would read as "disconnected").
        assert ("aioack_broker_connected", ()) not in s
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass  # nobody listens any more
    async with metrics.serve(port) as again:  # and a restart in this process takes the port
        assert again == (host, port)


async def test_serve_on_a_taken_port_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with PrometheusMetrics().serve(port):
                pass


def test_watermark_crossings_are_a_gauge_and_a_count() -> None:
    metrics = PrometheusMetrics()
    metrics.on_watermark(WatermarkEvent("q", "length", 9, 8, 10, above=True))
    metrics.on_watermark(WatermarkEvent("q", "length", 5, 8, 10, above=False))
    metrics.on_watermark(WatermarkEvent("q", "length", 8, 8, 10, above=True))
    s = parse(generate_latest(metrics.registry).decode())
    labels = {"queue": "q", "measure": "length"}
    assert value(s, "aioack_queue_watermark_reached", labels) == 1
    assert value(s, "aioack_queue_watermark_crossings_total", labels) == 2


async def test_the_limits_of_the_queues_watched_are_exported() -> None:
    admin, metrics = FlakyAdmin(), PrometheusMetrics()
    admin.use_limits(
        {
            "q": QueueLimit(max_length=100, length_watermark=80),
            "elsewhere": QueueLimit(max_length=5),  # not a queue of this worker
        }
    )
    async with metrics.queue_depths(admin, ["q"], interval_s=30):
        s = parse(generate_latest(metrics.registry).decode())
    assert value(s, "aioack_queue_limit", {"queue": "q", "kind": "max_length"}) == 100
    assert value(s, "aioack_queue_limit", {"queue": "q", "kind": "length_watermark"}) == 80
    assert {dict(labels)["queue"] for (name, labels) in s if name == "aioack_queue_limit"} == {"q"}


async def test_a_broker_down_from_the_start_shows_as_stale_figures() -> None:
    admin, metrics = FlakyAdmin(), PrometheusMetrics()
    admin.down = True
    async with metrics.queue_depths(admin, ["q"], interval_s=0.02) as depths:
        await wait_until(lambda: depths._errors >= 2, 5, message="failed refreshes")
        await asyncio.sleep(0.1)
        s = parse(generate_latest(metrics.registry).decode())
    assert value(s, "aioack_queue_stats_age_seconds") >= 0.1
    assert ("aioack_queue_messages", (("queue", "q"), ("state", "ready"))) not in s
