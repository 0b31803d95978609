"""Prometheus metrics on every broker: scraped over HTTP, parsed, and checked against what ran.

A known sequence of runs (one succeeds, one retries then succeeds, one is
requeued then succeeds, one fails for good, plus an undecodable body and an
unknown task), then the counters, histograms and gauges must say exactly
that; queue depths must match the broker after a known set of messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from aioack import App, Reject, Retry, TaskContext
from aioack.brokers import Broker
from aioack.message import Message
from aioack.observe.metrics import UNDECODABLE, UNKNOWN, PrometheusMetrics
from aioack.results import ResultBackend
from aioack.testing import run_until_idle
from tests.observe.scrape import Samples, scrape, total, value
from tests.support import unique, wait_until

pytestmark = pytest.mark.contract

FAST_RETRY = {"retry_backoff": 0.01, "retry_backoff_max": 0.05}


def _app(broker: Broker, queue: str, metrics: PrometheusMetrics) -> App:
    app = App(broker=broker, hooks=[metrics])

    @app.task(queue=queue, name="m.ok")
    async def ok() -> int:
        return 1

    @app.task(queue=queue, name="m.flaky", max_retries=1, **FAST_RETRY)
    async def flaky(ctx: TaskContext) -> None:
        if ctx.attempt == 1:
            raise Retry()

    @app.task(queue=queue, name="m.bounce")
    async def bounce(ctx: TaskContext) -> None:
        if ctx.delivery_count == 1:
            raise Reject(requeue=True)

    @app.task(queue=queue, name="m.fails", max_retries=0)
    async def fails() -> None:
        raise ValueError("boom")

    return app


async def test_counters_and_histograms_move_as_tasks_succeed_retry_and_dead_letter(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, metrics = new_queue(), PrometheusMetrics()
    app = _app(broker, queue, metrics)
    for name in ("m.ok", "m.flaky", "m.bounce", "m.fails"):
        await app.tasks[name].delay()
    await broker.publish(queue, b"\xffnot json", message_id="garbage")
    await broker.publish(queue, Message(id="u", task="no.such.task").encode(), message_id="u")

    async with (
        metrics.serve(0, broker=broker, queues=[queue], interval_s=0.05) as (host, port),
        httpx.AsyncClient() as client,
    ):
        await run_until_idle(app, [queue])
        url = f"http://{host}:{port}/metrics"
        s = await scrape(client, url)

        assert value(s, "aioack_tasks_received_total", {"queue": queue}) == 8
        assert value(s, "aioack_redeliveries_total", {"queue": queue}) == 1  # the requeue
        started = {t: total(s, "aioack_tasks_started_total", task=t) for t in _TASKS}
        assert started == {"m.ok": 1, "m.flaky": 2, "m.bounce": 2, "m.fails": 1}
        assert _finished(s, queue) == {
            ("m.ok", "succeeded"): 1,
            ("m.flaky", "retry_requested"): 1,
            ("m.flaky", "succeeded"): 1,
            ("m.bounce", "rejected"): 1,
            ("m.bounce", "succeeded"): 1,
            ("m.fails", "failed"): 1,
        }
        assert _settled(s, queue) == {
            ("m.ok", "ack", ""): 1,
            ("m.flaky", "retry", ""): 1,
            ("m.flaky", "ack", ""): 1,
            ("m.bounce", "requeue", ""): 1,
            ("m.bounce", "ack", ""): 1,
            ("m.fails", "dead_letter", "failed"): 1,
            (UNDECODABLE, "dead_letter", "malformed"): 1,
            (UNKNOWN, "dead_letter", "unknown_task"): 1,
        }
        assert total(s, "aioack_retries_total", task="m.flaky") == 1
        assert total(s, "aioack_retries_total") == 1
        # A histogram counts every run / every settle; +Inf holds them all.
        for task, runs in started.items():
            labels = {"task": task, "queue": queue}
            assert value(s, "aioack_task_duration_seconds_count", labels) == runs
            assert value(s, "aioack_task_duration_seconds_bucket", {**labels, "le": "+Inf"}) == runs
            assert value(s, "aioack_settle_latency_seconds_count", labels) == runs
        assert total(s, "aioack_settle_latency_seconds_count") == 8  # each delivery, once
        assert value(s, "aioack_tasks_running") == 0
        assert value(s, "aioack_deliveries_held") == 0
        assert value(s, "aioack_broker_connected") == 1

        # The three dead letters, nothing else, once the refresher has read the broker.
        want = {"ready": 0, "delayed": 0, "unacked": 0, "dead": 3}
        await wait_until(
            lambda: _depths_are(client, url, queue, want), 10, message=f"depths {want}"
        )


async def test_gauges_and_depths_while_tasks_run_and_wait(
    broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, metrics = new_queue(), PrometheusMetrics()
    app = App(broker=broker)
    gate, started = asyncio.Event(), asyncio.Event()

    @app.task(queue=queue, name="m.block")
    async def block() -> None:
        started.set()
        await gate.wait()

    for _ in range(2):
        await block.delay()
    await block.apply_async(countdown=60)  # held by the broker, never by the worker
    worker = app.worker([queue], concurrency=1, prefetch=2, hooks=[metrics])
    async with (
        metrics.serve(0, broker=broker, queues=[queue], interval_s=0.05) as (host, port),
        httpx.AsyncClient() as client,
        worker,
    ):
        url = f"http://{host}:{port}/metrics"
        await asyncio.wait_for(started.wait(), 10)
        # One runs (concurrency 1), both are held (prefetch 2), the broker counts both unacked.
        busy = {"ready": 0, "delayed": 1, "unacked": 2, "dead": 0}
        await wait_until(lambda: _depths_are(client, url, queue, busy), 10, message=str(busy))
        s = await scrape(client, url)
        assert value(s, "aioack_tasks_running") == 1
        assert value(s, "aioack_deliveries_held") == 2

        async def renewed() -> bool:  # the heartbeat renews both held deliveries' leases
            return value(await scrape(client, url), "aioack_lease_renewals_total") >= 2

        await wait_until(renewed, 10, message="lease renewals counted")
        gate.set()
        idle = {"ready": 0, "delayed": 1, "unacked": 0, "dead": 0}
        await wait_until(lambda: _depths_are(client, url, queue, idle), 10, message=str(idle))
        s = await scrape(client, url)
        assert value(s, "aioack_tasks_running") == 0
        assert value(s, "aioack_deliveries_held") == 0
        assert total(s, "aioack_tasks_settled_total", action="ack") == 2
        assert value(s, "aioack_queue_stats_age_seconds") < 5


_TASKS = ("m.ok", "m.flaky", "m.bounce", "m.fails")


def _finished(s: Samples, queue: str) -> dict[tuple[str, str], float]:
    return {
        (labels["task"], labels["outcome"]): v
        for (name, items), v in s.items()
        if name == "aioack_tasks_finished_total" and (labels := dict(items))["queue"] == queue
    }


def _settled(s: Samples, queue: str) -> dict[tuple[str, str, str], float]:
    return {
        (labels["task"], labels["action"], labels["reason"]): v
        for (name, items), v in s.items()
        if name == "aioack_tasks_settled_total" and (labels := dict(items))["queue"] == queue
    }


async def _depths_are(
    client: httpx.AsyncClient, url: str, queue: str, want: dict[str, int]
) -> bool:
    s = await scrape(client, url)
    seen = {
        state: value(s, "aioack_queue_messages", {"queue": queue, "state": state}) for state in want
    }
    return seen == want and ("aioack_queue_messages", _labels(queue, "ready")) in s


def _labels(queue: str, state: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"queue": queue, "state": state}.items()))


async def test_revoked_expired_and_duplicate_deliveries_show_with_their_reason(
    broker: Broker, results: ResultBackend, new_queue: Callable[[], str]
) -> None:
    queue, metrics = new_queue(), PrometheusMetrics()
    app = App(broker=broker, results=results, hooks=[metrics])

    @app.task(queue=queue, name="m.once", idempotent=True)
    async def once() -> int:
        return 1

    @app.task(queue=queue, name="m.plain")
    async def plain() -> int:
        return 1

    twice = unique("dup")
    await once.apply_async(task_id=twice)
    await once.apply_async(task_id=twice)  # a duplicate publish: acked unrun
    await app.revoke((await plain.delay()).id)
    await plain.apply_async(expires=0.01)
    await asyncio.sleep(0.05)
    async with (
        metrics.serve(0, broker=broker, queues=[queue], interval_s=0.05) as (host, port),
        httpx.AsyncClient() as client,
    ):
        await run_until_idle(app, [queue], concurrency=1)  # one at a time: no busy key
        s = await scrape(client, f"http://{host}:{port}/metrics")
    assert _settled(s, queue) == {
        ("m.once", "ack", ""): 1,
        ("m.once", "ack", "duplicate"): 1,
        ("m.plain", "ack", "revoked"): 1,
        ("m.plain", "dead_letter", "expired"): 1,
    }
