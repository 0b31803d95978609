"""Task: one registered function with its options, and its producer calls."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import functools
import inspect
import logging
import time
import typing
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

from aioack._batch import bounded, call_message
from aioack._unawaited import MustAwait
from aioack._unique import stored_key, unique_window_s
from aioack.errors import (
    BrokerUnavailable,
    ConfigurationError,
    InvalidArguments,
    JoinInsideTask,
    ResultTimeout,
    TaskFailed,
    TaskRevoked,
)
from aioack.message import Message, Step, new_task_id, summarize
from aioack.options import TaskOptions, check_queue_name
from aioack.results.base import Effect, ResultBackend, ResultRecord, State
from aioack.signature import TaskSignature

logger = logging.getLogger("aioack.task")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Producer(Protocol):
    """What a task and a result handle need from their App: publishing, results, tasks."""

    results: ResultBackend | None

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]: ...

    async def publish(self, message: Message, queue: str, *, delay_s: float = 0.0) -> None: ...

    async def publish_messages(self, batch: Sequence[tuple[Message, str]]) -> None: ...

    def require_results(self) -> ResultBackend: ...

    async def revoke(
        self, task_ids: str, *, terminate: bool = False, expires: float | None = None
    ) -> None: ...

    async def use_running_loop(self) -> None: ...

    def call_sync(self, what: str, call: Callable[[Producer], Awaitable[T]]) -> T: ...


#: The id of the task run the current asyncio task belongs to (None outside
#: a run): the worker sets it, ``AsyncResult.get()`` reads it (deadlock guard).
CURRENT_TASK_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aioack_current_task_id", default=None
)


@dataclass(frozen=True, slots=True)
class AsyncResult(Generic[R]):
    """A handle on a published task run: its id, and its state and result."""

    id: str
    task_name: str
    queue: str
    app: Producer | None = field(default=None, repr=False, compare=False)

    async def state(self) -> State:
        """The run's state now; PENDING when the backend knows nothing (yet, or any more).

        Raises:
            ConfigurationError: the App has no result backend.
            BrokerUnavailable: the backend cannot be reached.
        """
        record = await (await self._backend()).fetch(self.id)
        return State.PENDING if record is None else record.state

    def state_sync(self) -> State:
        """``state()`` for sync code, from any thread (see ``get_sync``).

        Raises:
            BlockingCallInEventLoop: called where an event loop runs.
            ConfigurationError, BrokerUnavailable: as ``state()``.
        """
        return self._producer().call_sync(
            "result.state_sync()", lambda twin: replace(self, app=twin).state()
        )

    async def revoke(self, *, terminate: bool = False, expires: float | None = None) -> None:
        """Revoke this run: see ``App.revoke``.

        Raises:
            ConfigurationError: no App, or the App keeps no results.
            BrokerUnavailable: the result backend cannot be reached.
        """
        if self.app is None:
            raise ConfigurationError("this AsyncResult has no App; use app.revoke(task_id)")
        await self.app.revoke(self.id, terminate=terminate, expires=expires)

    def revoke_sync(self, *, terminate: bool = False, expires: float | None = None) -> None:
        """``revoke()`` for sync code, from any thread (see ``App.revoke``).

        Raises:
            BlockingCallInEventLoop: called where an event loop runs.
            ConfigurationError, BrokerUnavailable: as ``revoke()``.
        """
        self._producer().call_sync(
            "result.revoke_sync()",
            lambda twin: twin.revoke(self.id, terminate=terminate, expires=expires),
        )

    async def record(self) -> ResultRecord | None:
        """The raw record (JSON result, error details), or None."""
        return await (await self._backend()).fetch(self.id)

    # timeout= is Celery's name for it; a caller's asyncio.timeout() works as well.
    async def get(self, timeout: float | None = None, *, allow_join: bool = False) -> R:  # noqa: ASYNC109
        """Wait (without polling) for the final state and return the task's value.

        The value is validated into the task's return annotation: a task
        annotated ``-> Receipt`` gives a ``Receipt``. ``timeout`` in seconds;
        None waits for ever.

        Raises:
            TaskFailed: the run ended in FAILURE or DEAD_LETTERED.
            TaskRevoked: the run was revoked (a TaskFailed).
            ResultTimeout: no final state within ``timeout``.
            JoinInsideTask: called inside a running task without ``allow_join=True``.
            ConfigurationError: the App has no result backend.
            BrokerUnavailable: the backend cannot be reached.
        """
        self._refuse_join(allow_join)
        record = await (await self._backend()).wait(self.id, timeout)
        if record is None:
            raise ResultTimeout(f"no result for task {self.task_name}[{self.id}] in {timeout}s")
        if record.state is State.SUCCESS:
            return self._decode(record.result)
        failure = TaskRevoked if record.state is State.REVOKED else TaskFailed
        raise failure(
            self.id, record.state.value, record.error_type, record.error_message, record.traceback
        )

    def get_sync(self, timeout: float | None = None, *, allow_join: bool = False) -> R:
        """``get()`` for sync code (a script, a Django view), from any thread.

        Blocks this thread, not an event loop: the wait runs on the App's sync
        loop thread. Raises what ``get()`` raises, here.

        Raises:
            BlockingCallInEventLoop: called where an event loop runs (await
                ``get()`` there instead).
            TaskFailed, TaskRevoked, ResultTimeout, JoinInsideTask,
            ConfigurationError, BrokerUnavailable: as ``get()``.
        """
        self._refuse_join(allow_join)  # here: the run's id is this thread's context
        return self._producer().call_sync(
            "result.get_sync()",
            lambda twin: replace(self, app=twin).get(timeout, allow_join=True),
        )

    def _refuse_join(self, allow_join: bool) -> None:
        running = CURRENT_TASK_ID.get()
        if running is not None and not allow_join:
            raise JoinInsideTask(
                f"task run {running} awaits the result of {self.id}: if every worker slot "
                "waits like this, none makes progress. Pass allow_join=True if you are sure."
            )

    def _decode(self, value: Any) -> R:
        task = self.app.tasks.get(self.task_name) if self.app is not None else None
        if task is None:
            return value  # type: ignore[no-any-return]  # a producer without the task: raw JSON
        return task.result_adapter.validate_python(value)  # type: ignore[no-any-return]

    async def _backend(self) -> ResultBackend:
        app = self._producer()
        await app.use_running_loop()
        return app.require_results()

    def _producer(self) -> Producer:
        if self.app is None:
            raise ConfigurationError("this AsyncResult has no App; use app.result(task_id)")
        return self.app


@dataclass(slots=True)
class TaskContext:
    """What a running task may know of its delivery. Declare a parameter typed
    ``TaskContext`` (first, for typed ``delay()`` calls) to receive it."""

    id: str
    task_name: str
    queue: str
    #: 1 for the first run; +1 per retry.
    attempt: int
    #: How many times the broker has handed out this message (crash loops raise it).
    delivery_count: int
    redelivered: bool
    _ack: Callable[[], Awaitable[None]] = field(repr=False)
    #: The key effect-once runs share: ``apply_async(idempotency_key=...)``,
    #: or the task id for ``idempotent=True`` tasks; None otherwise.
    idempotency_key: str | None = None
    _results: ResultBackend | None = field(default=None, repr=False)
    #: Set when the result backend failed under an effect block of this run.
    backend_failure: BaseException | None = field(default=None, repr=False)

    async def ack(self) -> None:
        """Ack the delivery now (manual early ack): a crash from here on loses the run.

        Raises:
            AlreadySettled: the delivery was acked already.
        """
        await self._ack()

    def effect(self, name: str = "effect") -> AbstractAsyncContextManager[Effect]:
        """A block whose writes commit at most once per idempotency key, ever.

        For example:

            async with ctx.effect("charge") as fx:
                fx.tx.hincrby("balances", user, -cents)   # queued, not awaited

        The writes queued on ``fx.tx`` (a redis-py pipeline on the result
        backend's Redis) commit atomically with the mark (key, ``name``)
        when the block exits; if an earlier run of this key committed that
        mark, they are dropped (``fx.already_applied`` says so up front).
        An exception in the block drops them too. Use one name per distinct
        effect of a task.

        Raises:
            ConfigurationError: the run has no idempotency key, or the result
                backend cannot commit effects (only Redis can).
        """
        if self.idempotency_key is None:
            raise ConfigurationError(
                f"ctx.effect() in {self.task_name}: the run has no idempotency key; mark "
                "the task idempotent=True or publish it with apply_async(idempotency_key=...)"
            )
        if self._results is None:
            raise ConfigurationError("ctx.effect() needs a result backend: App(results=...)")
        return self._guarded(self._results.effect(self.idempotency_key, name, self.id))

    @contextlib.asynccontextmanager
    async def _guarded(self, block: AbstractAsyncContextManager[Effect]) -> AsyncIterator[Effect]:
        """Remember a backend outage on entering or committing the block.

        The worker then defers the whole run (same attempt, later) however the
        task went on: a caught ``BrokerUnavailable`` must not let a run whose
        effect never committed complete its key.
        """
        try:
            effect = await block.__aenter__()
        except BrokerUnavailable as exc:
            self.backend_failure = exc
            raise
        try:
            yield effect
        except BaseException as exc:  # the block's own error: its writes are discarded
            if not await block.__aexit__(type(exc), exc, exc.__traceback__):
                raise
            return
        try:
            await block.__aexit__(None, None, None)
        except BrokerUnavailable as exc:
            self.backend_failure = exc
            raise


class Task(Generic[P, R]):
    """A registered task. Call ``delay()`` / ``apply_async()`` to run it in a worker."""

    def __init__(self, app: Producer, fn: Callable[..., Any], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options
        self.name = options.name
        self.signature = TaskSignature(fn, TaskContext, strict=options.strict_arguments)
        self.is_async = asyncio.iscoroutinefunction(fn)
        _check_concurrency_key(options, self.signature)

    @functools.cached_property
    def result_adapter(self) -> TypeAdapter[Any]:
        """Validates/dumps return values by the return annotation (Any when absent).

        Built on first use, so annotations naming classes defined after the
        task still resolve.
        """
        try:
            hints = typing.get_type_hints(self.fn)
        except Exception:  # unresolvable annotation (a local class): keep the raw JSON
            hints = {}
        return TypeAdapter(hints.get("return", Any))

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.options.queue}>"

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, AsyncResult[R]]:
        """Publish a run with these arguments (checked now, against the signature).

        A coroutine: ``await`` it. Not awaited, it publishes nothing: mypy says
        so (``unused-coroutine``) and, at run time, a RuntimeWarning names the
        line. In sync code, call ``delay_sync()``. It raises what
        ``apply_async`` raises.
        """
        return MustAwait(
            self._apply_async(self.app, args, kwargs), f"{self.fn.__name__}.delay(...)"
        )

    def delay_sync(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """``delay()`` for sync code, from any thread: returns once the broker holds the run.

        Runs on the App's sync loop thread, with its own connections (see
        ``App.call_sync``); the arguments are checked as ``delay()`` checks them.

        Raises:
            BlockingCallInEventLoop: called where an event loop runs (await
                ``delay()`` there instead).
            InvalidArguments, ...: as ``apply_async()``.
        """
        return self._apply_sync("delay_sync()", args, kwargs, _NO_OPTIONS)

    def map(self, items: Iterable[tuple[Any, ...]]) -> Coroutine[Any, Any, list[AsyncResult[R]]]:
        """Publish one run per item, each item a tuple of positional arguments.

        ``await add.map([(1, 2), (3, 4)])``; a one-argument task takes
        ``[(x,) for x in xs]``. Every item is checked as ``delay()`` checks
        it before anything is published: one bad item fails the call and
        publishes nothing. Then the runs go to the broker as one batch (one
        pipelined round trip on Redis, one transaction on SQLite, the
        confirms awaited together on RabbitMQ). Returns their handles, in
        the items' order. For keyword arguments, or several tasks in one
        batch, use ``App.publish_many([task.s(...), ...])``. At most
        ``MAX_BATCH`` (10,000) items per call.

        Raises:
            TypeError: an item is not a tuple.
            InvalidArguments: an item does not fit the task's signature (its index named).
            ValueError: more than 10,000 items.
            MessageTooLarge, QueueFull, BrokerUnavailable, PublishFailed: as ``delay()``;
                QueueFull when the queue has no room for the whole batch (on
                RabbitMQ, which decides per message, some may have been taken).
        """
        return MustAwait(self._map(items), f"{self.fn.__name__}.map(...)")

    async def _map(self, items: Iterable[tuple[Any, ...]]) -> list[AsyncResult[R]]:
        what, now = f"{self.name}.map()", time.time()
        messages = []
        for index, item in enumerate(bounded(items, what)):
            if not isinstance(item, tuple):
                raise TypeError(
                    f"{what}: item {index} is a {type(item).__name__}, not a tuple of "
                    "positional arguments: write (x,) for a one-argument task, or use "
                    "app.publish_many([task.s(...), ...]) for keyword arguments"
                )
            where = f"{what}: item {index}"
            messages.append(call_message(self.name, self.signature, item, {}, now, where))
        queue = self.options.queue
        await self.app.publish_messages([(message, queue) for message in messages])
        return [AsyncResult(message.id, self.name, queue, self.app) for message in messages]

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        expires: float | dt.datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        idempotency_key: str | None = None,
        unique_for: float | None = None,
        unique_key: str | None = None,
    ) -> Coroutine[Any, Any, AsyncResult[R]]:
        """Publish a run with options. ``countdown``/``expires`` in seconds from now.

        Returns once the broker holds the message. A coroutine, as ``delay()``.

        ``unique_for`` (seconds, at most 30 days): publish only if no publish
        of the same key was made in the last ``unique_for`` seconds; else
        publish nothing and return the handle of the run that holds the key
        (its id, even when ``task_id`` names another). The key is
        ``unique_key`` (scoped by task name), or else the task name and the
        arguments. Needs a result backend. See docs/task-control.md.

        Raises:
            InvalidArguments: the arguments do not fit the task's signature.
            MessageTooLarge: the encoded message is over ``max_message_bytes``.
            ValueError: a bad option (``countdown`` with ``eta``, a naive
                datetime, a bad ``task_id``, ``unique_for`` out of range...).
            ConfigurationError: ``idempotency_key`` or ``unique_for`` without a
                result backend.
            QueueFull: the queue is at its ``max_length`` (``App(queue_limits=...)``).
            BrokerUnavailable: the broker (or, for ``unique_for``, the result
                backend) cannot be reached.
            PublishFailed: the broker did not confirm that it holds the message.
        """
        options = _ApplyOptions(
            countdown, eta, expires, queue, task_id, idempotency_key, unique_for, unique_key
        )
        return MustAwait(
            self._apply_async(self.app, args, kwargs, options),
            f"{self.fn.__name__}.apply_async(...)",
        )

    def apply_async_sync(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        expires: float | dt.datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        idempotency_key: str | None = None,
        unique_for: float | None = None,
        unique_key: str | None = None,
    ) -> AsyncResult[R]:
        """``apply_async()`` for sync code, from any thread (see ``delay_sync``).

        Raises:
            BlockingCallInEventLoop: called where an event loop runs.
            InvalidArguments, ...: as ``apply_async()``.
        """
        options = _ApplyOptions(
            countdown, eta, expires, queue, task_id, idempotency_key, unique_for, unique_key
        )
        return self._apply_sync("apply_async_sync()", args, kwargs or {}, options)

    def _apply_sync(
        self,
        what: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: Mapping[str, Any],
        options: _ApplyOptions,
    ) -> AsyncResult[R]:
        sent = self.app.call_sync(
            f"{self.name}.{what}",
            lambda twin: self._apply_async(twin, args, dict(kwargs), options),
        )
        # The handle reads results through the App it was asked of, on any loop.
        return replace(sent, app=self.app)

    async def _apply_async(
        self,
        producer: Producer,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any] | None,
        options: _ApplyOptions | None = None,
    ) -> AsyncResult[R]:
        countdown, eta, expires, queue, task_id, idempotency_key, unique_for, unique_key = (
            options or _NO_OPTIONS
        )
        window_s = unique_window_s(unique_for, unique_key)
        now = time.time()
        delay_s = _delay_s(countdown, eta, now)
        wire_args, wire_kwargs = self.signature.to_wire(tuple(args), dict(kwargs or {}))
        try:
            message = Message(
                id=task_id or new_task_id(),
                task=self.name,
                args=wire_args,
                kwargs=wire_kwargs,
                expires=_expires_at(expires, now),
                published_at=now,
                idempotency_key=idempotency_key,
            )
        except ValidationError as exc:  # task_id, idempotency_key, expires
            raise ValueError(f"apply_async({self.name}): {summarize(exc)}") from exc
        target = check_queue_name(queue) if queue is not None else self.options.queue
        if idempotency_key is not None and producer.results is None:
            raise ConfigurationError("idempotency_key needs a result backend: App(results=...)")
        if window_s is not None:
            key = stored_key(self.name, unique_key, wire_args, wire_kwargs)
            return await self._publish_unique(producer, message, target, delay_s, key, window_s)
        await producer.publish(message, target, delay_s=delay_s)
        return AsyncResult(message.id, self.name, target, producer)

    async def _publish_unique(
        self,
        producer: Producer,
        message: Message,
        queue: str,
        delay_s: float,
        key: str,
        window_s: float,
    ) -> AsyncResult[R]:
        """Reserve ``key``, then publish; a key held already publishes nothing.

        A publish that fails (or is cancelled) frees the key again, so it
        does not block the window; the publish error is what the caller sees.
        """
        await producer.use_running_loop()  # the results read next are this loop's
        if producer.results is None:
            raise ConfigurationError(
                "unique_for needs a result backend to hold its keys: "
                "App(results='redis://...') or App(results='sqlite://')"
            )
        backend = producer.results
        holder = await _reserve(backend, key, message.id, window_s, self.name)
        if holder is not None:  # published within the window: that run is this call's
            return AsyncResult(holder, self.name, queue, producer)
        try:
            await producer.publish(message, queue, delay_s=delay_s)
        except BaseException:
            await _unreserve_quietly(backend, key, message.id, self.name)
            raise
        return AsyncResult(message.id, self.name, queue, producer)

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A signature of this task for a workflow: ``chain``, ``group``, ``chord``.

        In a chain (and as a chord's callback) the previous result is
        prepended to ``args``, as in Celery. The arguments are checked where
        the workflow is built (``chain(...)``), as ``delay()`` checks them;
        here, only that they fit the signature at all.

        Raises:
            InvalidArguments: more arguments than the task takes, or an unknown keyword.
        """
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """An immutable signature: it takes no previous result; checked now, as ``delay()``.

        Raises:
            InvalidArguments: the arguments do not fit the task's signature.
        """
        return Signature(self, args, kwargs, immutable=True)

    async def run_inline(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here, without a broker (for tests and scripts)."""
        result = self.fn(*args, **kwargs)
        if self.is_async:
            return await result  # type: ignore[no-any-return]
        return result  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Signature(Generic[R]):
    """A task and some of its arguments, to run later as a workflow step."""

    task: Task[Any, R]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: ``.si()``: the previous step's result is not passed to it.
    immutable: bool = False

    def __post_init__(self) -> None:
        if self.immutable:
            self.task.signature.to_wire(self.args, dict(self.kwargs))
        else:  # what fits with or without a result before it
            try:
                self.task.signature.public.bind_partial(*self.args, **self.kwargs)
            except TypeError as exc:
                raise InvalidArguments(f"{self.task.name}.s(): {exc}") from exc

    def step(self, *, receives: bool) -> Step:
        """The step on the wire; ``receives``: a result will be prepended to its arguments.

        Raises:
            InvalidArguments: the arguments do not fit the task's signature.
            ValueError: more arguments than a message may carry.
        """
        call = self.task.signature
        receives = receives and not self.immutable
        args, kwargs = (call.to_wire_after if receives else call.to_wire)(
            self.args, dict(self.kwargs)
        )
        try:
            return Step(
                task=self.task.name,
                queue=self.task.options.queue,
                args=args,
                kwargs=kwargs,
                immutable=not receives,
            )
        except ValidationError as exc:
            raise ValueError(f"{self.task.name}.s(): {summarize(exc)}") from exc

    def __repr__(self) -> str:
        call = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.task.name}.{'si' if self.immutable else 's'}({call})"


class _ApplyOptions(typing.NamedTuple):
    """apply_async()'s options, carried to the sync loop thread as one value."""

    countdown: float | None = None
    eta: dt.datetime | None = None
    expires: float | dt.datetime | None = None
    queue: str | None = None
    task_id: str | None = None
    idempotency_key: str | None = None
    unique_for: float | None = None
    unique_key: str | None = None


_NO_OPTIONS = _ApplyOptions()


async def _reserve(
    backend: ResultBackend, key: str, task_id: str, window_s: float, task_name: str
) -> str | None:
    """``backend.reserve_unique``, but a call cancelled meanwhile leaves its key free.

    The take goes on after a cancel (a SET already batched, a SQLite write
    already queued): so it is shielded, waited for, and undone if it took
    the key. The cancel then goes on; it waits one round trip at most.
    """
    # Awaited on every path below; one more cancel meanwhile leaves it to end alone.
    taking = asyncio.ensure_future(backend.reserve_unique(key, task_id, window_s))
    try:
        return await asyncio.shield(taking)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # failed: it took nothing
            if await taking is None:
                await _unreserve_quietly(backend, key, task_id, task_name)
        raise


async def _unreserve_quietly(
    backend: ResultBackend, key: str, task_id: str, task_name: str
) -> None:
    """Free a key whose publish failed; a backend error here must not hide that failure."""
    try:
        await backend.unreserve_unique(key, task_id)
    except Exception as exc:
        # The key (not logged: it may carry the caller's data) frees itself at its window's end.
        logger.warning(
            "task %s[%s]: publish failed and its unique key could not be freed (%s); "
            "it stays held until its window ends",
            task_name,
            task_id,
            type(exc).__name__,
        )


def _check_concurrency_key(options: TaskOptions, signature: TaskSignature) -> None:
    """A concurrency_key naming no parameter fails here, at decoration time, not per run."""
    key = options.concurrency_key
    if not isinstance(key, str):
        return
    named = [
        p.name
        for p in signature.public.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if key not in named:
        raise ConfigurationError(
            f"task {options.name!r}: concurrency_key={key!r} names no parameter of the task; "
            f"its parameters are: {', '.join(named) or '(none)'}; or pass a callable"
        )


def _delay_s(countdown: float | None, eta: dt.datetime | None, now: float) -> float:
    if countdown is not None and eta is not None:
        raise ValueError("give countdown or eta, not both")
    if countdown is not None:
        if countdown < 0:
            raise ValueError("countdown must be >= 0 seconds")
        return float(countdown)
    if eta is not None:
        return max(0.0, _aware(eta, "eta").timestamp() - now)
    return 0.0


def _expires_at(expires: float | dt.datetime | None, now: float) -> float | None:
    if expires is None:
        return None
    if isinstance(expires, dt.datetime):
        return _aware(expires, "expires").timestamp()
    if expires <= 0:
        raise ValueError("expires must be > 0 seconds from now")
    return now + float(expires)


def _aware(moment: dt.datetime, what: str) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (e.g. datetime.now(UTC))")
    return moment
