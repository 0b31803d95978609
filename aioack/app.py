"""App: the task registry and the producer side."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from pydantic import ValidationError

from aioack._batch import bounded, call_message, publish_encoded
from aioack._portal import LoopThread, refuse_inside_event_loop
from aioack.brokers import Broker, MemoryBroker, broker_from_url
from aioack.errors import ConfigurationError, UnknownTask
from aioack.hooks import Hooks, PublishEvent
from aioack.limits import QueueLimit, check_limits, publish_bounded
from aioack.message import DEFAULT_MAX_MESSAGE_BYTES, Message
from aioack.options import TaskOptions
from aioack.periodic import DEFAULT_TICK_LEASE_S, Schedule, Scheduler
from aioack.periodic.declare import new_schedule
from aioack.periodic.schedule import check_schedule
from aioack.results import MemoryResultBackend, ResultBackend, backend_from_url
from aioack.results.base import Revocation
from aioack.results.revocations import (
    DEFAULT_REVOKE_EXPIRES_S,
    check_revoke_expires,
    check_task_ids,
)
from aioack.task import AsyncResult, Signature, Task, TaskContext
from aioack.urls import explain
from aioack.worker import Redactor, Worker, WorkerSettings
from aioack.worker.settings import default_prefetch

logger = logging.getLogger("aioack.app")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: Seconds to wait for a connection of a finished event loop to close, before
#: it is dropped as it is (its sockets then close when collected).
_STALE_CLOSE_TIMEOUT_S = 1.0

#: The broker an App uses when given none and AIOACK_BROKER_URL is not set:
#: the durable embedded default, ``aioack.db`` in the current directory.
DEFAULT_BROKER_URL = "sqlite://"
#: Where an App finds its broker and result backend when its code names none.
ENV_BROKER_URL = "AIOACK_BROKER_URL"
ENV_RESULTS_URL = "AIOACK_RESULTS_URL"


class App:
    """Registry of tasks plus the broker handle producers publish through.

    ``broker`` is a URL (``sqlite://``, ``redis://``, ``amqp://``,
    ``memory://`` ...) or a Broker instance; ``broker_options`` override the
    URL's query. With no broker, ``AIOACK_BROKER_URL`` names it, else the
    durable embedded default: ``sqlite://``, the file ``aioack.db`` in the
    current directory.

    ``results`` is a result backend URL (``sqlite://``, ``redis://...``) or a
    ResultBackend; with none, ``AIOACK_RESULTS_URL`` names it, else no
    results are kept (``result.get()`` then raises).
    ``result_expires``: seconds a result and a completed idempotency key are
    kept; given here it wins over the results URL's ``?result_expires=``
    (default: the backend's, one day). ``idempotency_lease``: seconds a
    claimed key stays held by a run that stopped renewing it (a dead worker)
    before another run takes over.

    ``revoke_expires``: seconds a revocation lasts by default (three hours,
    as Celery's ``REVOKE_EXPIRES``): workers started within that time still
    honour it. See docs/task-control.md.

    ``queue_limits``: queue name -> ``QueueLimit`` (or a dict of its fields):
    how much each queue may hold and what a publish into a full one does
    (``QueueFull`` at once, or after waiting). Given to the broker, which
    enforces them; every process using the queue needs the same limits.
    See docs/operations.md.
    """

    def __init__(
        self,
        broker: str | Broker | None = None,
        *,
        results: str | ResultBackend | None = None,
        result_expires: float | None = None,
        idempotency_lease: float = 30.0,
        revoke_expires: float = DEFAULT_REVOKE_EXPIRES_S,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        hooks: Iterable[object] = (),
        queue_limits: Mapping[str, QueueLimit | Mapping[str, Any]] | None = None,
        **broker_options: Any,
    ) -> None:
        if idempotency_lease <= 0:
            raise ConfigurationError("idempotency_lease must be > 0 seconds")
        try:
            self.revoke_expires = check_revoke_expires(revoke_expires, "revoke_expires")
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self._queue_limits = check_limits(queue_limits or {})
        self._connected = False
        # The event loop this App's connections belong to (None: none open).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rebinding: asyncio.Event | None = None
        # The sync API's own loop thread and connections, made on first use.
        self._sync_lock = threading.Lock()
        self._sync: tuple[LoopThread, App] | None = None
        # Given here, it overrides the results URL's own ?result_expires=.
        self._result_options = {} if result_expires is None else {"result_expires": result_expires}
        self.results: ResultBackend | None = None
        self.use_results(results if results is not None else os.environ.get(ENV_RESULTS_URL))
        self.idempotency_lease = float(idempotency_lease)
        self.tasks: dict[str, Task[Any, Any]] = {}
        #: Periodic schedules by name (``app.periodic``; docs/periodic.md).
        self.schedules: dict[str, Schedule] = {}
        self.max_message_bytes = max_message_bytes
        self._declared: set[str] = set()
        self._broker_options = broker_options
        self._explicit_broker = broker is not None
        # One rule, the same for producers and the CLI: what the code names,
        # else the environment, else the embedded default (a file, durable).
        default = os.environ.get(ENV_BROKER_URL) or DEFAULT_BROKER_URL
        self._broker_spec: str | Broker = broker if broker is not None else default
        self._broker = self._build_broker(self._broker_spec)
        #: Observers of every event, on the producer side and in this App's workers.
        self.hooks = Hooks(hooks)

    def add_hook(self, hook: object) -> None:
        """Register a hook (see ``aioack.hooks``) for publishes and this App's workers.

        Raises:
            ConfigurationError: it observes no event, or names one that does not exist.
        """
        self.hooks.add(hook)

    # -- broker ------------------------------------------------------------

    def _build_broker(self, spec: str | Broker) -> Broker:
        """The broker a URL names (options checked now), or the instance given.

        Raises:
            ConfigurationError: a bad URL or option; options beside an instance.
        """
        if isinstance(spec, str):
            broker = broker_from_url(spec, **self._broker_options)
        elif self._broker_options:
            names = ", ".join(sorted(self._broker_options))
            raise ConfigurationError(
                f"broker options ({names}) apply to a broker URL, not to a "
                f"{type(spec).__name__} instance: pass them to its constructor instead"
            )
        else:
            broker = spec
        if self._queue_limits:
            broker.use_limits(self._queue_limits)  # refused here if the broker cannot
        return broker

    @property
    def broker(self) -> Broker:
        """The broker (built when the App was, or by ``use_broker``)."""
        return self._broker

    @property
    def queue_limits(self) -> Mapping[str, QueueLimit]:
        """queue -> QueueLimit, as the broker enforces them (read-only)."""
        return self._broker.limits

    @property
    def has_broker(self) -> bool:
        """Whether a broker was named (not the embedded default)."""
        return self._explicit_broker

    def use_broker(self, broker: str | Broker) -> None:
        """Pick the broker before connecting (the CLI's ``--broker``).

        Raises:
            ConfigurationError: the App is connected, or the URL or an option is bad.
        """
        if self._connected or self._sync is not None:
            raise ConfigurationError(
                "cannot change the broker of a connected App (after a *_sync call: "
                "call app.close_sync() first)"
            )
        self._broker = self._build_broker(broker)
        self._broker_spec = broker
        self._explicit_broker = True
        self._declared.clear()

    def use_results(self, results: str | ResultBackend | None) -> None:
        """Pick the result backend before connecting (the CLI's ``--results``).

        Raises:
            ConfigurationError: the App is connected (or made a *_sync call), or
                the URL or an option is bad.
        """
        if self._connected or self._sync is not None:
            raise ConfigurationError(
                "cannot change the result backend of a connected App (after a *_sync "
                "call: call app.close_sync() first)"
            )
        self._results_spec = results
        self.results = (
            backend_from_url(results, **self._result_options)
            if isinstance(results, str)
            else results
        )

    async def connect(self) -> None:
        """Open the broker (and result backend) connections. Idempotent.

        Raises:
            BrokerUnavailable: the broker cannot be reached.
            ConfigurationError: the App is connected on an event loop that still
                runs in another thread.
        """
        await self.use_running_loop()
        await self.broker.connect()
        if self.results is not None:
            await self.results.connect()
        self._connected = True

    async def aclose(self) -> None:
        """Close the connections this App opened on its event loop (not the sync API's)."""
        await self.use_running_loop()
        if self._broker is not None:
            await self._broker.aclose()
        if self.results is not None:
            await self.results.aclose()
        self._connected = False
        self._loop = None

    # -- event loops ---------------------------------------------------------

    async def use_running_loop(self) -> None:
        """Make this App's connections belong to the running event loop.

        A connection works only on the loop it was opened on. An App used from
        a new loop after its first one finished (a second ``asyncio.run()``, a
        test client's per-request loop) closes what the old loop left open, as
        well as it can, and opens new connections on the new one when next
        needed. Every async call does this itself; it costs one comparison
        when the loop has not changed.

        Raises:
            ConfigurationError: the App's connections belong to an event loop
                that still runs (in another thread): use the ``*_sync`` calls
                from other threads, or one App per event loop.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            if self._rebinding is not None:  # another call of this loop is closing the old ones
                await self._rebinding.wait()
            return
        old, self._loop = self._loop, loop
        if old is None:
            return
        if old.is_running():
            self._loop = old
            raise ConfigurationError(
                "this App's connections belong to an event loop that runs in another "
                "thread; from other threads use the *_sync calls (task.delay_sync(), "
                "result.get_sync()), or give each event loop an App of its own"
            )
        self._rebinding = rebinding = asyncio.Event()
        try:
            await self._drop_stale_connections()
        finally:
            self._rebinding = None
            rebinding.set()

    async def _drop_stale_connections(self) -> None:
        """Close, as well as a new loop can, the connections a finished loop opened."""
        self._connected = False
        self._declared.clear()
        for closable in (self._broker, self.results):
            if closable is None:
                continue
            # Their loop is gone: closing may fail or hang on its futures; their
            # sockets then close when collected. A SQLite thread closes fine.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_STALE_CLOSE_TIMEOUT_S):
                    await closable.aclose()

    # -- results -----------------------------------------------------------

    def require_results(self) -> ResultBackend:
        """The result backend.

        Raises:
            ConfigurationError: the App was made without ``results=``.
        """
        if self.results is None:
            raise ConfigurationError(
                "this App keeps no results: pass results='redis://...' (or 'memory://') to App()"
            )
        return self.results

    async def revoke(
        self,
        task_ids: str | Iterable[str],
        *,
        terminate: bool = False,
        expires: float | None = None,
    ) -> None:
        """Revoke task runs by id: no worker runs them from now on.

        A queued or delayed run is acked unrun when it is delivered (state
        REVOKED); with ``terminate=True`` a run going on now is cancelled too
        (a plain ``def`` in a thread cannot be stopped: its thread runs on, but
        its result is not stored). Every worker hears it at once and keeps it
        ``expires`` seconds (default: the App's ``revoke_expires``), so a
        worker started in that time honours it. An unknown id is accepted
        and harmless.

        Raises:
            ValueError: a bad id (empty, over 200 characters, not printable),
                over 10,000 ids, or ``expires`` not in (0, 7 days].
            ConfigurationError: the App keeps no results (revocations live there).
            BrokerUnavailable: the result backend cannot be reached: nothing revoked.
        """
        await self.use_running_loop()
        backend = self.require_results()
        lasting_s = check_revoke_expires(
            self.revoke_expires if expires is None else expires, "expires"
        )
        ids = check_task_ids([task_ids] if isinstance(task_ids, str) else list(task_ids))
        await backend.connect()  # idempotent; a revoke needs no broker connection
        until = time.time() + lasting_s
        await backend.revoke([Revocation(task_id, terminate, until) for task_id in ids])
        logger.info(
            "revoked %d task(s)%s for %.0fs",
            len(ids),
            " (terminate)" if terminate else "",
            lasting_s,
            extra={"event": "revoke", "task_ids": ids[:20], "terminate": terminate},
        )

    def result(self, task_id: str, task: str | Task[Any, Any] = "") -> AsyncResult[Any]:
        """A handle on a run known by id (e.g. from an HTTP request).

        Pass its task (or task name) so ``get()`` validates into the return type.
        """
        name = task if isinstance(task, str) else task.name
        queue = self.tasks[name].options.queue if name in self.tasks else ""
        return AsyncResult(task_id, name, queue, self)

    async def __aenter__(self) -> App:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the sync API ----------------------------------------------------------

    def call_sync(self, what: str, call: Callable[[App], Awaitable[T]]) -> T:
        """Run ``call(app)`` on this App's sync loop thread; block until it is done.

        ``app`` is this App's sync twin: the same tasks, hooks and settings,
        with connections of its own, opened on that loop on first use. The
        ``*_sync`` methods are built on this.

        Raises:
            BlockingCallInEventLoop: called where an event loop runs.
            ConfigurationError: the broker or result backend cannot be shared
                with a second event loop (an instance, or memory://).
        """
        refuse_inside_event_loop(what)  # before anything starts: nothing to undo
        portal, twin = self._sync_twin()
        return portal.run(what, lambda: _awaited(call(twin)))

    def revoke_sync(
        self,
        task_ids: str | Iterable[str],
        *,
        terminate: bool = False,
        expires: float | None = None,
    ) -> None:
        """``revoke()`` for sync code: see ``revoke`` and ``call_sync``."""
        self.call_sync(
            "app.revoke_sync()",
            lambda twin: twin.revoke(task_ids, terminate=terminate, expires=expires),
        )

    def close_sync(self) -> None:
        """Close the sync API's connections and stop its thread. Idempotent.

        Done at interpreter exit by itself; call it to close them sooner (a
        test, a management command). A later ``*_sync`` call starts them again.

        Raises:
            BlockingCallInEventLoop: called where an event loop runs.
        """
        with self._sync_lock:
            made, self._sync = self._sync, None
        if made is not None:
            made[0].close()

    def _sync_twin(self) -> tuple[LoopThread, App]:
        with self._sync_lock:
            if self._sync is None:
                twin = self._twin()
                self._sync = (LoopThread("sync", on_close=twin.aclose), twin)
                _WITH_SYNC.add(self)
            return self._sync

    def _forget_sync(self) -> None:
        """In a forked child: the sync twin's connections are the parent's; a new one
        is made on the next call (nothing is closed: that would be the parent's)."""
        self._sync_lock, self._sync = threading.Lock(), None

    def _twin(self) -> App:
        """A copy of this App with connections of its own, built from the same URLs."""
        if not isinstance(self._broker_spec, str) or isinstance(self._broker, MemoryBroker):
            raise ConfigurationError(_shared_refusal("broker", self._broker))
        if self.results is not None and (
            not isinstance(self._results_spec, str) or isinstance(self.results, MemoryResultBackend)
        ):
            raise ConfigurationError(_shared_refusal("result backend", self.results))
        twin = copy.copy(self)  # tasks, hooks and settings shared: registrations seen by both
        twin._broker = twin._build_broker(self._broker_spec)
        twin.results = (
            backend_from_url(self._results_spec, **self._result_options)
            if isinstance(self._results_spec, str)
            else None
        )
        twin._declared = set()
        twin._connected, twin._loop, twin._rebinding = False, None, None
        twin._sync_lock, twin._sync = threading.Lock(), None
        return twin

    async def publish(self, message: Message, queue: str, *, delay_s: float = 0.0) -> None:
        """Encode and publish a message; connects on first use.

        A full queue is handled as its ``QueueLimit.when_full`` says.

        Raises:
            QueueFull: the queue is full (after waiting, with ``when_full="wait"``).
            MessageTooLarge: the encoded message is over ``max_message_bytes``.
            BrokerUnavailable: the broker cannot be reached.
            PublishFailed: the broker did not confirm that it holds the message.
        """
        if self.hooks.on_publish:
            message = self._with_hook_headers(message, queue, delay_s)
        body = message.encode(self.max_message_bytes)
        await self._ready_to_publish([queue])
        broker = self.broker
        await publish_bounded(
            lambda: broker.publish(queue, body, message_id=message.id, delay_s=delay_s),
            queue,
            broker.limits.get(queue),
        )

    async def publish_messages(self, batch: Sequence[tuple[Message, str]]) -> None:
        """Encode every ``(message, queue)``, then publish one broker batch per queue.

        Nothing is published unless every message encodes. The queues'
        batches go out concurrently; a full queue is handled as its
        ``QueueLimit.when_full`` says.

        Raises:
            As ``publish()``: the first error of any queue, once all have ended.
        """
        encoded: dict[str, list[tuple[str, bytes]]] = {}
        for message, queue in batch:
            sent = message
            if self.hooks.on_publish:
                sent = self._with_hook_headers(message, queue, 0.0)
            encoded.setdefault(queue, []).append((sent.id, sent.encode(self.max_message_bytes)))
        if encoded:
            await self._ready_to_publish(list(encoded))
            await publish_encoded(self.broker, encoded)

    async def publish_many(self, signatures: Iterable[Signature[Any]]) -> list[AsyncResult[Any]]:
        """Publish one run per signature (``task.s(...)``), of any tasks, as one batch.

        ``await app.publish_many([send.s("ada", subject="hi"), report.s(7)])``.
        Each signature is checked as ``delay()`` checks its arguments, all
        of them before anything is published: one bad signature fails the
        call and publishes nothing. A signature's queue is its task's; each
        queue gets one broker batch. ``.s()`` and ``.si()`` mean the same
        here (no previous result). At most 10,000 signatures per call.
        Returns the runs' handles, in order.

        Raises:
            TypeError: an item is not a signature.
            InvalidArguments: a signature's arguments do not fit its task (its index named).
            ValueError: more than 10,000 signatures.
            MessageTooLarge, QueueFull, BrokerUnavailable, PublishFailed: as ``delay()``.
        """
        now, batch = time.time(), []
        for index, signature in enumerate(bounded(signatures, "publish_many()")):
            if not isinstance(signature, Signature):
                raise TypeError(
                    "publish_many() takes signatures (task.s(...)), not a "
                    f"{type(signature).__name__} (item {index})"
                )
            task = signature.task
            where = f"publish_many(): item {index} ({task.name})"  # not its arguments' repr
            if task.app is not self:
                raise ValueError(f"{where}: its task belongs to another App")
            args, kwargs = signature.args, dict(signature.kwargs)
            message = call_message(task.name, task.signature, args, kwargs, now, where)
            batch.append((message, task.options.queue))
        await self.publish_messages(batch)
        return [AsyncResult(message.id, message.task, queue, self) for message, queue in batch]

    async def _ready_to_publish(self, queues: Sequence[str]) -> None:
        """On this loop, connected, and ``queues`` declared (once each)."""
        if self._loop is not asyncio.get_running_loop() or self._rebinding is not None:
            await self.use_running_loop()
        if not self._connected:
            await self.connect()
        fresh = [queue for queue in queues if queue not in self._declared]
        if fresh:
            # Once per queue: a publish to a queue nobody declared yet must not bounce.
            await self.broker.declare(fresh)
            self._declared.update(fresh)

    def _with_hook_headers(self, message: Message, queue: str, delay_s: float) -> Message:
        event = PublishEvent(message.task, message.id, queue, delay_s, dict(message.headers))
        self.hooks.emit(self.hooks.on_publish, event)
        if event.headers == message.headers:
            return message
        try:
            return Message.model_validate({**message.model_dump(), "headers": event.headers})
        except ValidationError as exc:  # a hook's headers: the publish goes on without them
            logger.error("publish hooks set headers that do not fit a message: %s", exc)
            return message

    # -- tasks -------------------------------------------------------------

    # Coroutine functions first, so Task[P, R] carries the awaited return type.
    @overload
    def task(self, fn: Callable[Concatenate[TaskContext, P], Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[Concatenate[TaskContext, P], R], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: None = None, /, **options: Any) -> _TaskDecorator: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Register ``fn`` as a task: ``@app.task`` or ``@app.task(queue=..., ...)``.

        Raises:
            ConfigurationError: an unknown option, a bad value, a duplicate name.
        """
        if fn is None:
            return _TaskDecorator(self, options)
        return self._register(fn, options)

    def _register(self, fn: Callable[..., Any], options: dict[str, Any]) -> Task[Any, Any]:
        name = options.pop("name", None) or f"{fn.__module__}.{fn.__qualname__}"
        try:
            task_options = TaskOptions(name=name, **options)
        except ValidationError as exc:
            raise ConfigurationError(f"task {name!r}: {exc}") from exc
        if name in self.tasks:
            raise ConfigurationError(f"task name {name!r} is registered twice; pass name=...")
        task: Task[Any, Any] = self._task_class(self, fn, task_options)
        self.tasks[name] = task
        return task

    #: What ``@app.task`` makes: a subclass may add calls (the Django integration's
    #: ``delay_on_commit``).
    _task_class: type[Task[Any, Any]] = Task

    def _worker_tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The tasks this App's workers run: a subclass may wrap them (the Django
        integration closes stale database connections around plain defs)."""
        return self.tasks

    # -- periodic tasks (docs/periodic.md) -------------------------------------

    @overload
    def periodic(
        self,
        task: Task[P, R],
        /,
        *,
        cron: str | None = None,
        every: float | None = None,
        tz: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        missed: str = "once",
        queue: str | None = None,
        expires: float | None = None,
    ) -> Schedule: ...

    @overload
    def periodic(
        self,
        task: None = None,
        /,
        *,
        cron: str | None = None,
        every: float | None = None,
        tz: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        missed: str = "once",
        queue: str | None = None,
        expires: float | None = None,
    ) -> _PeriodicDecorator: ...

    def periodic(
        self,
        task: Task[Any, Any] | None = None,
        /,
        *,
        cron: str | None = None,
        every: float | None = None,
        tz: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        missed: str = "once",
        queue: str | None = None,
        expires: float | None = None,
    ) -> Schedule | _PeriodicDecorator:
        """Run a task at each tick of ``cron`` (in time zone ``tz``) or ``every`` seconds.

        As a decorator over a task (or a function, registered as a task),
        ``@app.periodic(cron="*/5 * * * *", tz="Europe/Paris")``; or called
        with a task, ``app.periodic(report, every=3600, args=("daily",),
        name="daily-report")``, which returns the Schedule. ``missed``: what
        ticks that passed while no scheduler ran do: "skip", "once" (fire the
        newest, once: the default) or "all" (each, at most 100).
        ``expires``: seconds after its tick a run not yet started is dropped.
        Each tick is fired once however many schedulers run (docs/periodic.md).

        Raises:
            ConfigurationError: an invalid cron expression, an unknown time zone,
                ``every`` <= 0, both or neither of cron and every, a bad policy,
                arguments that do not fit the task, a name declared twice.
        """
        spec = {
            "cron": cron,
            "every": every,
            "tz": tz,
            "args": args,
            "kwargs": kwargs,
            "name": name,
            "missed": missed,
            "queue": queue,
            "expires": expires,
        }
        if task is None:
            # Checked now, on a stand-in name, so a bad schedule fails at the decorator line.
            check_schedule(name or "(decorated task)", cron, every, tz, missed)
            return _PeriodicDecorator(self, spec)
        return self._add_schedule(task, spec)

    def _add_schedule(self, task: Task[Any, Any], spec: dict[str, Any]) -> Schedule:
        if self.tasks.get(task.name) is not task:
            raise ConfigurationError(
                f"app.periodic: task {task.name!r} is not registered on this App; "
                "register it with @app.task first"
            )
        schedule = new_schedule(task, taken=self.schedules, **spec)
        self.schedules[schedule.name] = schedule
        return schedule

    def scheduler(
        self,
        *,
        lease: float = DEFAULT_TICK_LEASE_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> Scheduler:
        """A Scheduler of this App's schedules: ``await app.scheduler().run()``.

        ``lease``: seconds a tick claimed by a scheduler that died stays held
        before another fires it. ``clock`` (Unix time) and ``sleep`` are for
        tests that drive time.

        Raises:
            ConfigurationError: a bad lease.
        """
        return Scheduler(
            list(self.schedules.values()), self, lease_s=lease, clock=clock, sleep=sleep
        )

    def get_task(self, name: str) -> Task[Any, Any]:
        """The task registered as ``name``.

        Raises:
            UnknownTask: no task is registered under that name.
        """
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTask(f"no task registered as {name!r}") from None

    def queues(self) -> list[str]:
        """The queues the registered tasks publish to, in registration order."""
        return list(dict.fromkeys(t.options.queue for t in self.tasks.values()))

    def worker(
        self,
        queues: Sequence[str] | None = None,
        *,
        concurrency: int = 10,
        prefetch: int | None = None,
        shutdown_timeout: float = 30.0,
        cancel_on_lost_delivery: bool = True,
        hooks: Iterable[object] = (),
        log_values: Redactor | None = None,
    ) -> Worker:
        """A Worker over ``queues`` (default: every queue the tasks use).

        It gets this App's tasks, broker, result backend and hooks (plus
        ``hooks`` for this worker only), not the App itself. ``log_values``:
        a redactor deciding what of task arguments and return values the log
        lines may carry (nothing without one): ``(task, "arguments" or
        "result", JSON value) -> what to log, or None``.

        Raises:
            ConfigurationError: a bad setting (the message says which).
        """
        try:
            settings = WorkerSettings(
                queues=list(queues) if queues else (self.queues() or ["default"]),
                concurrency=concurrency,
                prefetch=prefetch if prefetch is not None else default_prefetch(concurrency),
                shutdown_timeout=shutdown_timeout,
                cancel_on_lost_delivery=cancel_on_lost_delivery,
                max_message_bytes=self.max_message_bytes,
                idempotency_lease=self.idempotency_lease,
            )
        except ValidationError as exc:
            raise ConfigurationError(explain(exc, WorkerSettings, "worker")) from exc
        return Worker(
            self._worker_tasks(),
            self.broker,
            settings,
            results=self.results,
            hooks=Hooks([*self.hooks, *hooks]),
            log_values=log_values,
        )


async def _awaited(value: Awaitable[T]) -> T:
    return await value


def _shared_refusal(what: str, given: object) -> str:
    if isinstance(given, MemoryBroker | MemoryResultBackend):
        return (
            f"the sync API runs on an event loop of its own, and a memory:// {what} "
            "lives inside one event loop: use sqlite:// (no server) or a server URL"
        )
    return (
        f"the sync API opens its own connections from the App's URLs, and this App was "
        f"given a {type(given).__name__} instance: pass its URL (and options) to App() "
        "instead"
    )


#: Apps that made a *_sync call: a forked child forgets their sync twins.
_WITH_SYNC: weakref.WeakSet[App] = weakref.WeakSet()


def _forget_sync_in_child() -> None:
    for app in list(_WITH_SYNC):
        app._forget_sync()


os.register_at_fork(after_in_child=_forget_sync_in_child)


class _TaskDecorator:
    def __init__(self, app: App, options: dict[str, Any]) -> None:
        self._app, self._options = app, options

    @overload
    def __call__(
        self, fn: Callable[Concatenate[TaskContext, P], Awaitable[R]], /
    ) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[Concatenate[TaskContext, P], R], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Task[Any, Any]:
        return self._app._register(fn, dict(self._options))


class _PeriodicDecorator:
    def __init__(self, app: App, spec: dict[str, Any]) -> None:
        self._app, self._spec = app, spec

    @overload
    def __call__(self, fn: Task[P, R], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[..., Any], /) -> Task[Any, Any]: ...

    def __call__(self, fn: Task[Any, Any] | Callable[..., Any], /) -> Task[Any, Any]:
        task = fn if isinstance(fn, Task) else self._app._register(fn, {})
        self._app._add_schedule(task, dict(self._spec))
        return task
