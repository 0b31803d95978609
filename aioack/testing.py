"""Helpers for testing code that uses aioack, on the in-process MemoryBroker."""

from __future__ import annotations

from collections.abc import Sequence

from aioack.app import App
from aioack.brokers.memory import MemoryBroker
from aioack.decide import OutcomeKind
from aioack.hooks import FinishedEvent, Hook

__all__ = ["MemoryBroker", "TaskErrors", "run_until_idle"]


class TaskErrors(Exception):
    """Raised by ``run_until_idle(raise_errors=True)``: tasks raised these."""

    def __init__(self, errors: list[tuple[str, BaseException]]) -> None:
        self.errors = errors
        summary = "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in errors[:5])
        super().__init__(f"{len(errors)} task error(s): {summary}")


async def run_until_idle(
    app: App,
    queues: Sequence[str] | None = None,
    *,
    concurrency: int = 10,
    raise_errors: bool = False,
) -> list[tuple[str, BaseException]]:
    """Run a worker until its queues hold nothing ready, delayed or running.

    Retries with a backoff are waited for (keep delays short in tests).
    Returns ``(task name, exception)`` for every exception a task raised;
    with ``raise_errors=True`` raises them as ``TaskErrors`` instead.
    """
    errors = _Errors()
    worker = app.worker(queues, concurrency=concurrency, shutdown_timeout=5.0, hooks=[errors])
    await worker.run(burst=True)
    if raise_errors and errors.seen:
        raise TaskErrors(errors.seen)
    return errors.seen


class _Errors(Hook):
    """Collects what tasks raised: failures, time-outs, rejections (not Retry, not outages)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, BaseException]] = []

    def on_finished(self, event: FinishedEvent) -> None:
        if event.error is not None and event.outcome not in _NOT_FAILURES:
            self.seen.append((event.task, event.error))


_NOT_FAILURES = frozenset({OutcomeKind.RETRY_REQUESTED.value, OutcomeKind.INTERRUPTED.value})
