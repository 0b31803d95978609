"""Turning a delivery into a run, and a run into an Outcome.

``prepare()`` decodes and checks a delivery (bad input becomes a dead-letter
Action, never an exception); ``execute()`` runs the task under its time
limit and captures what happened as an Outcome.
"""

from __future__ import annotations

import asyncio
import functools
import time
import traceback
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from aioack.decide import Action, Outcome, OutcomeKind, admit, dead_letter
from aioack.errors import (
    InvalidArguments,
    MalformedMessage,
    MessageTooLarge,
    Reject,
    Retry,
    TimeLimitExceeded,
)
from aioack.message import Message, decode
from aioack.results.base import ResultBackend
from aioack.task import Task, TaskContext
from aioack.worker.ackmanager import Held


@dataclass(slots=True)
class Job:
    """A delivery that passed its checks and is ready to run."""

    held: Held
    task: Task[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    context: TaskContext
    message: Message
    #: A plain def's call in its worker thread: it runs on after a cancel
    #: (a thread cannot be stopped), and what it holds must wait for it.
    thread: asyncio.Future[Any] | None = None


@dataclass(frozen=True, slots=True)
class Checks:
    """What deciding whether a delivery may run needs to know."""

    tasks: Mapping[str, Task[Any, Any]]
    max_message_bytes: int
    results: ResultBackend | None
    #: Task ids revoked (``task_id in revoked``): acked without running.
    revoked: Container[str] = ()


def prepare(checks: Checks, held: Held, context_ack: Any) -> Job | Action:
    """Decode and check a delivery. Returns a Job, or the Action that settles it now."""
    delivery = held.delivery
    if delivery.malformed is not None:
        return dead_letter("malformed", delivery.malformed)
    try:
        message = decode(delivery.body, checks.max_message_bytes)
    except MessageTooLarge as exc:
        return dead_letter("too_large", str(exc))
    except MalformedMessage as exc:
        return dead_letter("malformed", str(exc))
    held.message = message
    task = checks.tasks.get(message.task)
    if task is None:
        return dead_letter("unknown_task", f"no task registered as {message.task!r}")
    if message.then is not None and checks.results is None:
        # Run here, its next step would never be published: kept, to replay
        # once the worker has the result backend the workflow lives in.
        return dead_letter(
            "no_results",
            "a workflow step needs a worker with a result backend (--results URL or "
            "App(results=...)): replay it from the dead letters once it has one",
        )
    rejected = admit(
        task.options,
        delivery_count=delivery.delivery_count,
        redelivered=delivery.redelivered,
        expired=message.is_expired(time.time()),
        revoked=message.id in checks.revoked,
    )
    if rejected is not None:
        return rejected
    context = TaskContext(
        id=message.id,
        task_name=task.name,
        queue=delivery.queue,
        attempt=message.attempt,
        delivery_count=delivery.delivery_count,
        redelivered=delivery.redelivered,
        _ack=context_ack,
        idempotency_key=_idempotency_key(message, task),
        _results=checks.results,
    )
    try:
        args, kwargs = task.signature.from_wire(message.args, message.kwargs, context)
    except InvalidArguments as exc:
        return dead_letter("invalid_arguments", str(exc))
    return Job(held, task, args, kwargs, context, message)


def _idempotency_key(message: Message, task: Task[Any, Any]) -> str | None:
    if message.idempotency_key is not None:
        return message.idempotency_key
    return message.id if task.options.idempotent else None


@dataclass(slots=True)
class RunResult:
    outcome: Outcome
    value: Any = None
    traceback_text: str | None = None


async def execute(job: Job) -> RunResult:
    """Run the task; every way it can end becomes an Outcome (cancellation excepted)."""
    limit_s = job.task.options.time_limit
    deadline: asyncio.Timeout | None = None
    task = job.task
    try:
        # The coroutine function's own coroutine is awaited here, not through a
        # helper: one frame less per run, held for as long as the run lasts.
        call = task.fn(*job.args, **job.kwargs) if task.is_async else _in_thread(job)
        if limit_s is None:  # no timeout context on the hot path when there is no limit
            value = await call
        else:
            async with asyncio.timeout(limit_s) as deadline:
                value = await call
    except Retry as exc:
        return RunResult(Outcome(OutcomeKind.RETRY_REQUESTED, error=exc, countdown=exc.countdown))
    except Reject as exc:
        return RunResult(Outcome(OutcomeKind.REJECTED, requeue=exc.requeue, reason=exc.reason))
    except TimeoutError as exc:
        if deadline is None or not deadline.expired():
            return failed(exc)
        timeout = TimeLimitExceeded(f"{job.task.name} ran past its time_limit of {limit_s}s")
        return RunResult(Outcome(OutcomeKind.TIMED_OUT, error=timeout), traceback_text=_tb(exc))
    except Exception as exc:
        return failed(exc)
    return RunResult(Outcome(OutcomeKind.SUCCEEDED), value=value)


async def _in_thread(job: Job) -> Any:
    # A plain def runs in a worker thread so it never blocks the loop. A
    # thread cannot be cancelled: on time_limit (or a revoke) the run is
    # abandoned, not stopped; ``job.thread`` tells when it really ends.
    call = functools.partial(job.task.fn, *job.args, **job.kwargs)
    thread = job.thread = asyncio.ensure_future(anyio.to_thread.run_sync(call))
    thread.add_done_callback(_retrieved)
    return await asyncio.shield(thread)


def _retrieved(thread: asyncio.Future[Any]) -> None:
    """An abandoned thread's error is nobody's to raise: never logged as unretrieved."""
    if not thread.cancelled():
        thread.exception()


def failed(exc: Exception) -> RunResult:
    """The result of a run that raised ``exc``, with its traceback."""
    return RunResult(Outcome(OutcomeKind.FAILED, error=exc), traceback_text=_tb(exc))


def _tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
