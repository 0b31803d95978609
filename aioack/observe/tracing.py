"""OpenTelemetry tracing: a span per publish and per run, the trace carried in the message.

For example:

    from aioack.observe.tracing import TracingHook

    app = App("redis://127.0.0.1:6379/0", hooks=[TracingHook()])

Install ``aioack[otel]`` (the OpenTelemetry API) and configure an SDK as
usual; without one, every span is a no-op. Register the hook on the App, so
producers and workers both have it.

- ``on_publish`` starts a PRODUCER span ``publish <queue>`` (a child of
  whatever span is current: the HTTP request that enqueued the task) and
  writes its W3C trace context (``traceparent``, ``tracestate``) into the
  message headers. The span has no length: hooks see no "published" event,
  only the moment before.
- ``on_started`` reads the context back from the delivered headers and
  starts a CONSUMER span ``process <queue>`` as the publish span's child,
  made current for the task's own code (its spans nest under the run's).
  A retry is a copy of the message, headers kept: every attempt's span is a
  child of the same publish span.
- ``on_finished`` records the outcome (an error for ``failed`` and
  ``timed_out``), ``on_settled`` the settle action, and ends the span.

Open runs are kept by (task id, attempt), at most ``max_open_spans``: a run
that never settles (cancelled at a forced shutdown) is ended and dropped
when the oldest has to make room, so nothing grows without bound.

Attribute names follow OpenTelemetry's messaging semantic conventions where
one fits (``messaging.system``, ``messaging.operation.type``/``.name``,
``messaging.destination.name``, ``messaging.message.id``, ``error.type``);
aioack's own are under ``aioack.``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
from collections import OrderedDict
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from opentelemetry import context, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from aioack.hooks import DeliveryEvent, FinishedEvent, Hook, PublishEvent, SettledEvent

__all__ = ["FAILED_OUTCOMES", "TracingHook"]

#: Outcomes that mark a run's span as an error.
FAILED_OUTCOMES = frozenset({"failed", "timed_out"})


@dataclass(slots=True)
class _Run:
    span: Span
    #: The run's asyncio task and its context token: detached only there.
    task: asyncio.Task[Any] | None
    token: Token[context.Context] | None


class TracingHook(Hook):
    """Spans for publishes and runs, joined into one trace through the message headers."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        max_open_spans: int = 10_000,
    ) -> None:
        if max_open_spans < 1:
            raise ValueError("max_open_spans must be at least 1")
        self._tracer = trace.get_tracer("aioack", _version(), tracer_provider=tracer_provider)
        # W3C trace context only, not the global propagator's baggage: headers
        # are bounded (8 KiB a value), and baggage has no size of its own.
        self._propagator = propagator or TraceContextTextMapPropagator()
        self._max_open = max_open_spans
        self._runs: OrderedDict[tuple[str, int], _Run] = OrderedDict()

    def on_publish(self, event: PublishEvent) -> None:
        attributes: dict[str, Any] = {
            **_messaging("send", "publish", event.queue),
            "messaging.message.id": event.task_id,
            "aioack.task.name": event.task,
        }
        if event.delay_s:
            attributes["aioack.delay_s"] = event.delay_s
        span = self._tracer.start_span(
            f"publish {event.queue}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        try:
            self._propagator.inject(event.headers, context=trace.set_span_in_context(span))
        finally:
            span.end()

    def on_started(self, event: DeliveryEvent) -> None:
        if event.task_id is None or event.attempt is None:
            return  # never for a run: only decoded messages start
        # Headers come from the wire: the propagator validates them (a bad
        # traceparent is ignored, and the run starts a trace of its own).
        parent = self._propagator.extract(dict(event.headers))
        span = self._tracer.start_span(
            f"process {event.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                **_messaging("process", "process", event.queue),
                "messaging.message.id": event.task_id,
                "aioack.task.name": event.task or "",
                "aioack.attempt": event.attempt,
                "aioack.delivery_count": event.delivery_count,
                "aioack.redelivered": event.redelivered,
            },
        )
        task = _current_task()
        # Current in the run's own asyncio task, so the task's spans nest here;
        # never outside a task, where an attach would outlive the run.
        token = context.attach(trace.set_span_in_context(span)) if task is not None else None
        self._open((event.task_id, event.attempt), _Run(span, task, token))

    def on_finished(self, event: FinishedEvent) -> None:
        run = self._runs.get((event.task_id, event.attempt))
        if run is None:
            return
        run.span.set_attribute("aioack.outcome", event.outcome)
        run.span.set_attribute("aioack.duration_s", event.duration_s)
        if event.outcome in FAILED_OUTCOMES:
            error = event.error
            run.span.set_attribute("error.type", type(error).__qualname__ if error else "failed")
            if error is not None:
                run.span.record_exception(error)
            run.span.set_status(Status(StatusCode.ERROR, event.outcome))

    def on_settled(self, event: SettledEvent) -> None:
        if event.task_id is None or event.attempt is None:
            return
        run = self._runs.pop((event.task_id, event.attempt), None)
        if run is None:
            return  # never started (refused at receipt, handed back): no span
        span = run.span
        span.set_attribute("aioack.settle.action", event.action)
        if event.reason:
            span.set_attribute("aioack.dead_letter.reason", event.reason)
        if event.delay_s:
            span.set_attribute("aioack.retry.delay_s", event.delay_s)
        if event.lost:
            span.set_attribute("aioack.settle.lost", True)
        self._close(run)

    def _open(self, key: tuple[str, int], run: _Run) -> None:
        earlier = self._runs.pop(key, None)
        if earlier is not None:  # the same message running twice here (a duplicate id)
            self._close(earlier, abandoned=True)
        self._runs[key] = run
        while len(self._runs) > self._max_open:
            _, oldest = self._runs.popitem(last=False)
            self._close(oldest, abandoned=True)

    def _close(self, run: _Run, *, abandoned: bool = False) -> None:
        if abandoned:
            run.span.set_attribute("aioack.span.abandoned", True)
        elif run.token is not None and run.task is _current_task():
            # Only in the task that attached it: elsewhere the token is not
            # valid (and the run's task ends, taking its context with it).
            context.detach(run.token)
        run.span.end()

    @property
    def open_spans(self) -> int:
        """Runs started and not yet settled (bounded by ``max_open_spans``)."""
        return len(self._runs)


def _messaging(operation_type: str, operation: str, queue: str) -> dict[str, str]:
    return {
        "messaging.system": "aioack",
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
    }


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: a hook called from plain code
        return None


def _version() -> str:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version("aioack")
    return "unknown"
