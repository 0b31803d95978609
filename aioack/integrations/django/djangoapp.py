"""DjangoApp and DjangoTask: publish on commit, and plain defs that close stale
database connections in their worker thread."""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from django.db import close_old_connections, transaction

from aioack.app import App, _TaskDecorator
from aioack.message import new_task_id
from aioack.task import Task, TaskContext

logger = logging.getLogger("aioack.django")

P = ParamSpec("P")
R = TypeVar("R")

#: The options ``apply_async_on_commit`` passes on: ``apply_async_sync``'s.
_APPLY_OPTIONS = frozenset(
    name
    for name, param in inspect.signature(Task.apply_async_sync).parameters.items()
    if param.kind is param.KEYWORD_ONLY
)


class DjangoTask(Task[P, R]):
    """A task of a ``DjangoApp``: a Task plus Celery 5.4's ``delay_on_commit``."""

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Publish a run when the current transaction commits; nothing on rollback.

        Outside a transaction (autocommit) it publishes at once. The arguments
        are checked now; the publish is ``delay_sync()``'s, after the commit,
        so a broker error raises where the outermost ``atomic`` block ends
        (the data is committed then). Returns nothing: the run has no id until
        it is published (give one with ``apply_async_on_commit(task_id=...)``).

        Raises:
            InvalidArguments: the arguments do not fit the task's signature.
        """
        self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        using: str | None = None,
        **options: Any,
    ) -> None:
        """``apply_async_sync()`` when the transaction of database ``using`` commits.

        ``options`` are ``apply_async()``'s (``countdown``, ``queue``,
        ``task_id``...); ``countdown`` counts from the commit.

        Raises:
            InvalidArguments: the arguments do not fit the task's signature.
            TypeError: an option ``apply_async()`` does not have.
        """
        unknown = sorted(set(options) - _APPLY_OPTIONS)
        if unknown:
            raise TypeError(
                f"{self.name}.apply_async_on_commit(): unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_APPLY_OPTIONS))}"
            )
        kwargs = dict(kwargs or {})
        self.signature.to_wire(tuple(args), kwargs)  # a bad call fails here, not at commit
        options.setdefault("task_id", new_task_id())  # to name it if its publish fails
        publish = functools.partial(self.apply_async_sync, args, kwargs, **options)
        transaction.on_commit(functools.partial(_robustly, publish, self.name), using=using)


def _robustly(publish: Callable[[], object], task_name: str) -> None:
    """Publish, and never let a failure stop the transaction's other on_commit
    callbacks (Django runs them in order and gives up at the first that raises:
    one broker error would drop every later publish of the transaction)."""
    try:
        publish()
    except Exception as exc:
        task_id = getattr(publish, "keywords", {}).get("task_id")
        logger.error(
            "%s[%s]: not published after the commit: %s: %s",
            task_name,
            task_id,
            type(exc).__name__,
            exc,
            extra={"event": "publish_on_commit_failed", "task": task_name, "task_id": task_id},
        )


def closing_connections(task: Task[P, R]) -> Task[P, R]:
    """A copy of a plain-def ``task`` whose run closes stale database connections.

    ``close_old_connections()`` runs before and after the function, in the
    worker thread that runs it: Django's connections belong to a thread, and
    the worker's threads are reused from run to run, so this is what a
    request's start and end do for a view. A connection past
    ``CONN_MAX_AGE`` (0: after every run) or broken is closed; a healthy,
    persistent one is kept. The registered task is unchanged (calling it in
    a test closes nothing); async tasks are returned as they are.
    """
    if task.is_async:
        return task
    fn = task.fn

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    wrapped = copy.copy(task)
    wrapped.fn = run
    return wrapped


class DjangoApp(App):
    """An App whose tasks have ``delay_on_commit``, and whose workers close stale
    database connections around each plain-def run (see ``closing_connections``).

    Made from settings by ``aioack.integrations.django.get_app()``; takes
    ``App``'s arguments when made by hand.
    """

    _task_class = DjangoTask

    def _worker_tasks(self) -> Mapping[str, Task[Any, Any]]:
        return {name: closing_connections(task) for name, task in self.tasks.items()}

    # The overloads of App.task, returning DjangoTask (for delay_on_commit's types).
    @overload
    def task(
        self, fn: Callable[Concatenate[TaskContext, P], Awaitable[R]], /
    ) -> DjangoTask[P, R]: ...

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> DjangoTask[P, R]: ...

    @overload
    def task(self, fn: Callable[Concatenate[TaskContext, P], R], /) -> DjangoTask[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> DjangoTask[P, R]: ...

    @overload
    def task(self, fn: None = None, /, **options: Any) -> _DjangoTaskDecorator: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Register ``fn`` as a task: ``@app.task`` or ``@app.task(queue=..., ...)``.

        Raises:
            ConfigurationError: an unknown option, a bad value, a duplicate name.
        """
        if fn is None:
            return _DjangoTaskDecorator(self, options)
        return self._register(fn, options)


class _DjangoTaskDecorator(_TaskDecorator):
    """What ``@app.task(...)`` returns: App's, typed for DjangoTask."""

    @overload
    def __call__(
        self, fn: Callable[Concatenate[TaskContext, P], Awaitable[R]], /
    ) -> DjangoTask[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> DjangoTask[P, R]: ...

    @overload
    def __call__(self, fn: Callable[Concatenate[TaskContext, P], R], /) -> DjangoTask[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> DjangoTask[P, R]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Any:
        return super().__call__(fn)
