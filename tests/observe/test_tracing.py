"""Tracing on every broker: the publish span's W3C context travels in the message headers.

The OpenTelemetry SDK's in-memory exporter collects the spans; a run's span
must be in the publisher's trace, a child of the publish span, and every
attempt of a retried task too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aioack import App, Retry, TaskContext
from aioack.brokers import Broker
from aioack.hooks import DeliveryEvent, SettledEvent
from aioack.observe.tracing import TracingHook
from aioack.testing import run_until_idle

FAST_RETRY = {"retry_backoff": 0.01, "retry_backoff_max": 0.05}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    # Its own provider, never the global one: tests do not share spans.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.contract
async def test_a_run_span_is_a_child_of_its_publish_span_through_the_broker(
    broker: Broker,
    new_queue: Callable[[], str],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    queue, hook = new_queue(), TracingHook(tracer_provider=provider)
    tracer = provider.get_tracer("test")
    app = App(broker=broker, hooks=[hook])

    @app.task(queue=queue, name="t.ok")
    async def ok() -> None:
        with tracer.start_as_current_span("inside the task"):
            pass

    @app.task(queue=queue, name="t.flaky", max_retries=1, **FAST_RETRY)
    async def flaky(ctx: TaskContext) -> None:
        if ctx.attempt == 1:
            raise Retry()

    @app.task(queue=queue, name="t.fails", max_retries=0)
    async def fails() -> None:
        raise ValueError("boom")

    with tracer.start_as_current_span("http request") as request:
        for task in (ok, flaky, fails):
            await task.delay()
    await run_until_idle(app, [queue])

    spans = exporter.get_finished_spans()
    publishes = {s.attributes["aioack.task.name"]: s for s in spans if s.kind is SpanKind.PRODUCER}
    runs = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert sorted(publishes) == ["t.fails", "t.flaky", "t.ok"]
    assert sorted(_attempts(runs)) == [("t.fails", 1), ("t.flaky", 1), ("t.flaky", 2), ("t.ok", 1)]
    trace_id = request.get_span_context().trace_id
    for run in runs:
        publish = publishes[run.attributes["aioack.task.name"]]
        assert publish.context.trace_id == trace_id
        assert publish.parent is not None and publish.parent.span_id == _span_id(request)
        assert run.context.trace_id == trace_id, "the run left the publisher's trace"
        assert run.parent is not None and run.parent.span_id == publish.context.span_id
        assert run.attributes["messaging.destination.name"] == queue
        assert run.attributes["messaging.message.id"] == publish.attributes["messaging.message.id"]
    by_attempt = {_attempt(r): r for r in runs}
    assert _settle(by_attempt[("t.ok", 1)]) == ("succeeded", "ack")
    assert _settle(by_attempt[("t.flaky", 1)]) == ("retry_requested", "retry")
    assert _settle(by_attempt[("t.flaky", 2)]) == ("succeeded", "ack")
    failed = by_attempt[("t.fails", 1)]
    assert _settle(failed) == ("failed", "dead_letter")
    assert failed.attributes["aioack.dead_letter.reason"] == "failed"
    assert failed.attributes["error.type"] == "ValueError"
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    # The task's own span nests under its run's span.
    inside = next(s for s in spans if s.name == "inside the task")
    assert inside.parent is not None and inside.parent.span_id == _span_id(by_attempt[("t.ok", 1)])
    assert hook.open_spans == 0


def test_open_runs_are_bounded_and_the_oldest_are_ended(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    hook = TracingHook(tracer_provider=provider, max_open_spans=2)
    for i in range(5):  # runs that never settle
        hook.on_started(DeliveryEvent("q", 1, False, "t", f"id{i}", 1))
    assert hook.open_spans == 2
    ended = exporter.get_finished_spans()
    assert len(ended) == 3 and all(s.attributes["aioack.span.abandoned"] for s in ended)
    hook.on_settled(SettledEvent("q", "ack", "t", "id4", 1))
    assert hook.open_spans == 1


def test_a_hostile_traceparent_starts_a_trace_of_its_own(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    hook = TracingHook(tracer_provider=provider)
    for bad in ("garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 8000):
        event = DeliveryEvent("q", 1, False, "t", "id", 1, {"traceparent": bad})
        hook.on_started(event)
        hook.on_settled(SettledEvent("q", "ack", "t", "id", 1))
    assert [s.parent for s in exporter.get_finished_spans()] == [None, None, None]


def _attempt(span: ReadableSpan) -> tuple[str, int]:
    assert span.attributes is not None
    return str(span.attributes["aioack.task.name"]), int(span.attributes["aioack.attempt"])  # type: ignore[arg-type]


def _attempts(spans: list[ReadableSpan]) -> list[tuple[str, int]]:
    return [_attempt(s) for s in spans]


def _settle(span: ReadableSpan) -> tuple[object, object]:
    assert span.attributes is not None
    return span.attributes["aioack.outcome"], span.attributes["aioack.settle.action"]


def _span_id(span: object) -> int:
    return span.get_span_context().span_id  # type: ignore[attr-defined,no-any-return]


async def test_the_run_span_is_current_from_start_to_settle_in_the_runs_task(
    provider: TracerProvider,
) -> None:
    hook = TracingHook(tracer_provider=provider)
    hook.on_started(DeliveryEvent("q", 1, False, "t", "id", 1))
    assert trace.get_current_span().get_span_context().is_valid  # the task's spans nest here
    hook.on_settled(SettledEvent("q", "ack", "t", "id", 1))
    assert not trace.get_current_span().get_span_context().is_valid  # and no longer after
