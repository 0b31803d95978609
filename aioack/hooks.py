"""Hooks: observers of every event in a task's life, for metrics, logs and tracing.

A hook is an object with any of the ``on_*`` methods of ``Hook`` (subclass
``Hook`` to get the full, typed set as no-ops). Register it on the App
(``App(hooks=[...])``, ``app.add_hook()``), on one worker
(``app.worker(hooks=[...])``) or from the CLI (``--hook module:attr``).

Why objects with plain (synchronous) methods, and not async callables:

- one object sees many events and keeps state between them (a metrics
  hook, a span per run);
- a synchronous call cannot hold up a settle: it runs, returns, and the
  settle goes on. A hook that must do I/O hands the event to its own task;
- with no hook for an event, the worker pays one attribute check for it.

A hook can never change what happens to a delivery: it gets copies of the
facts, after the decision. (Events are plain, not frozen, dataclasses: a
frozen one costs 0.7 us more to build, per event, per task; treat them as
read-only all the same, other hooks see the same object.) One that raises
is logged (once per hook, method and exception type, not once per task) and
the worker goes on. The one
thing a hook may change is the headers of a message being published
(``PublishEvent.headers``), which tracing needs.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aioack.errors import ConfigurationError

logger = logging.getLogger("aioack.hooks")


@dataclass(slots=True)
class PublishEvent:
    """A producer is about to publish a run (``delay()``, ``apply_async()``).

    A retry is not a new publish: the broker copies the message, headers kept.
    """

    task: str
    task_id: str
    queue: str
    delay_s: float
    #: Sent with the message: a hook may add entries (trace context). Text only.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class DeliveryEvent:
    """A delivery was received, started, or lost. Task fields are None before decoding."""

    queue: str
    delivery_count: int
    redelivered: bool
    task: str | None = None
    task_id: str | None = None
    attempt: int | None = None
    #: The headers the message was published with (trace context).
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class FinishedEvent:
    """A run ended: returned, raised, timed out, was cancelled or interrupted."""

    task: str
    task_id: str
    queue: str
    attempt: int
    #: The OutcomeKind value: succeeded, failed, timed_out, retry_requested, ...
    outcome: str
    duration_s: float
    error: BaseException | None = None
    traceback: str | None = None


@dataclass(slots=True)
class SettledEvent:
    """A delivery was settled: acked, retried, deferred, requeued, dead-lettered..."""

    queue: str
    #: The ActionKind value: ack, retry, defer, requeue, release, dead_letter, nothing.
    action: str
    task: str | None = None
    task_id: str | None = None
    attempt: int | None = None
    delivery_count: int = 1
    #: For a dead letter: malformed, failed, timeout, delivery_limit, ...
    reason: str = ""
    detail: str = ""
    #: For a retry or a deferral: seconds until the next try.
    delay_s: float = 0.0
    #: Seconds from receipt to settlement (what the broker waited for).
    duration_s: float = 0.0
    #: The worker no longer owned the delivery: nothing was sent; the broker redelivers.
    lost: bool = False


@dataclass(slots=True)
class LeaseEvent:
    """The heartbeat renewed the leases of ``renewed`` held deliveries."""

    renewed: int


@dataclass(slots=True)
class ConnectionEvent:
    """The worker lost, or got back, its broker connection."""

    broker: str
    error: str | None = None


@dataclass(slots=True)
class WorkerEvent:
    """A worker started, or began to stop."""

    worker_id: str
    queues: tuple[str, ...]
    concurrency: int
    prefetch: int
    #: on_worker_stopping: a second stop request cut the grace period short.
    forced: bool = False


@dataclass(slots=True)
class WatermarkEvent:
    """A queue's count reached its watermark (``above``), or fell back below it.

    Sampled by each worker consuming the queue (``aioack.limits``): every
    such worker reports the crossing it sees.
    """

    queue: str
    #: ``length`` (ready + delayed, what max_length bounds) or ``unacked``.
    measure: str
    count: int
    watermark: int
    #: The limit the watermark warns of (max_length or max_unacked), if any.
    limit: int | None
    above: bool


class Hook:
    """Base class of hooks: every method does nothing. Override the ones you need."""

    def on_publish(self, event: PublishEvent) -> None:
        """A run is about to be published; ``event.headers`` may be added to."""

    def on_received(self, event: DeliveryEvent) -> None:
        """A delivery arrived, not yet checked (task fields are None)."""

    def on_started(self, event: DeliveryEvent) -> None:
        """The task function is about to run."""

    def on_finished(self, event: FinishedEvent) -> None:
        """The task function ended (any way)."""

    def on_settled(self, event: SettledEvent) -> None:
        """The delivery was settled (every delivery, once)."""

    def on_retry(self, event: SettledEvent) -> None:
        """A retry (action ``retry``) or a deferral (``defer``) was scheduled."""

    def on_dead_letter(self, event: SettledEvent) -> None:
        """A message (or, after an early ack, a copy) was dead-lettered."""

    def on_lease_renewed(self, event: LeaseEvent) -> None:
        """The heartbeat renewed held deliveries' leases."""

    def on_lost(self, event: DeliveryEvent) -> None:
        """This worker lost a delivery it held (lease taken, channel closed)."""

    def on_connection_lost(self, event: ConnectionEvent) -> None:
        """Receiving failed: the broker is unreachable."""

    def on_connection_restored(self, event: ConnectionEvent) -> None:
        """Receiving works again after a connection loss."""

    def on_worker_started(self, event: WorkerEvent) -> None:
        """The worker consumes now."""

    def on_worker_stopping(self, event: WorkerEvent) -> None:
        """The worker was asked to stop; the shutdown begins."""

    def on_watermark(self, event: WatermarkEvent) -> None:
        """A queue's length or unacked count crossed its watermark (either way)."""


#: Every event a hook can observe.
EVENTS = tuple(name for name in vars(Hook) if name.startswith("on_"))

Method = Callable[[Any], None]


class Hooks:
    """The registered hooks, compiled per event: ``hooks.on_started`` is a tuple of
    bound methods (empty when no hook observes that event).

    Emit with ``if hooks.on_started: hooks.emit(hooks.on_started, event)``, so
    an event nobody observes is not even built.
    """

    on_publish: tuple[Method, ...]
    on_received: tuple[Method, ...]
    on_started: tuple[Method, ...]
    on_finished: tuple[Method, ...]
    on_settled: tuple[Method, ...]
    on_retry: tuple[Method, ...]
    on_dead_letter: tuple[Method, ...]
    on_lease_renewed: tuple[Method, ...]
    on_lost: tuple[Method, ...]
    on_connection_lost: tuple[Method, ...]
    on_connection_restored: tuple[Method, ...]
    on_worker_started: tuple[Method, ...]
    on_worker_stopping: tuple[Method, ...]
    on_watermark: tuple[Method, ...]

    def __init__(self, hooks: Iterable[object] = ()) -> None:
        self._hooks: list[object] = []
        self._reported: set[tuple[str, str, type[BaseException]]] = set()
        for hook in hooks:
            self.add(hook)
        self._compile()

    def add(self, hook: object) -> None:
        """Register ``hook``.

        Raises:
            ConfigurationError: it observes nothing, or has an ``on_*`` method that
                is no event (a typo, with the closest event name).
        """
        check(hook)
        self._hooks.append(hook)
        self._compile()

    def __iter__(self) -> Any:
        return iter(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def _compile(self) -> None:
        for name in EVENTS:
            methods = tuple(m for h in self._hooks if (m := _observer(h, name)) is not None)
            setattr(self, name, methods)
        #: Any settle event observed (one check per settle when none is).
        self.observes_settles = bool(self.on_settled or self.on_retry or self.on_dead_letter)

    def emit(self, methods: tuple[Method, ...], event: object) -> None:
        """Call each method with ``event``; one that raises is logged, never raised."""
        for method in methods:
            try:
                method(event)
            except Exception as exc:  # an observer's bug must not touch the settle
                self._report(method, exc)

    def _report(self, method: Method, exc: Exception) -> None:
        owner = type(getattr(method, "__self__", method)).__qualname__
        name = getattr(method, "__name__", "?")
        key = (owner, name, type(exc))
        if key in self._reported:
            return
        self._reported.add(key)
        logger.error(
            "hook %s.%s raised %s: %s (logged once per hook and error type; the worker "
            "goes on, hooks never change a settle)",
            owner,
            name,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )


def _observer(hook: object, name: str) -> Method | None:
    """The hook's method for event ``name``, or None when it does not observe it."""
    method = getattr(hook, name, None)
    if method is None:
        return None
    if getattr(type(hook), name, None) is getattr(Hook, name):
        return None  # the base class's no-op: skip it, it would only cost a call
    return method  # type: ignore[no-any-return]


def check(hook: object) -> None:
    """Refuse a hook that observes nothing, or names an event that does not exist."""
    names = {n for n in dir(hook) if n.startswith("on_") and callable(getattr(hook, n))}
    unknown = sorted(names - set(EVENTS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], EVENTS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"events: {', '.join(EVENTS)}"
        raise ConfigurationError(f"hook {hook!r} has {unknown[0]!r}, which is no event ({hint})")
    if not any(_observer(hook, name) for name in EVENTS):
        raise ConfigurationError(
            f"hook {hook!r} observes no event: give it one of {', '.join(EVENTS)}"
        )
