"""ResultFlow: the worker's side of results and effect-once runs.

The Worker asks it three things per delivery, in order:

1. ``before_run``: may this run start? A task with ``rate_limit`` takes a
   token first (``ratelimit.py``), one with ``limit_concurrency`` a slot of
   its key (``concurrency.py``). For an effect-once run it claims the
   idempotency key first; a key some run already completed is acked without
   running (its result copied to this task id); a key a live run holds sends
   the delivery back with a delay (a worker slot is never blocked on it).
2. ``encode``: the return value, dumped to JSON by the task's return annotation.
3. ``after_run``: store the final record *before* the delivery is settled.
   If that store fails, the delivery is requeued instead of acked: a result
   is never lost behind an ack (a redelivery may run the task again).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from aioack._scope import TaskScope
from aioack.decide import REQUEUE, REVOKED, Action, ActionKind, Outcome, OutcomeKind
from aioack.errors import BrokerError, ConfigurationError
from aioack.results.base import ClaimStatus, ResultBackend, ResultRecord, State
from aioack.worker.concurrency import ConcurrencyGate
from aioack.worker.ratelimit import RateGate
from aioack.worker.runner import Job, RunResult, failed
from aioack.worker.workflows import Workflows, stopped_quietly

if TYPE_CHECKING:
    from aioack.task import Task
    from aioack.worker.ackmanager import Held

logger = logging.getLogger("aioack.worker")

#: A duplicate of a completed effect-once key: acked unrun (metrics and logs say why).
DUPLICATE = Action(ActionKind.ACK, reason="duplicate")

#: Longest wait (seconds) before a delivery whose key a live run holds is tried again.
MAX_BUSY_DELAY_S = 5.0


@dataclass(slots=True)
class _Claimed:
    key: str
    owner: str
    renewer: asyncio.Task[None] | None = None
    #: Another run took the key over (or completed it): this run was cancelled.
    lost: bool = False


class ResultFlow:
    """Stores states around each run and keeps effect-once runs to one."""

    def __init__(self, backend: ResultBackend | None, *, lease_s: float, worker_id: str) -> None:
        self.backend = backend
        self.lease_s = lease_s
        self._worker_id = worker_id
        #: Owns every claim's renewer: one ends with its run (``end``), all with the worker.
        self._renewers = TaskScope("renewers")
        #: Numbers the claims of this worker: an owner names one delivery.
        self._claim_numbers = itertools.count(1)
        self._claims: dict[int, _Claimed] = {}
        self.slots = ConcurrencyGate(
            backend, lease_s=lease_s, worker_id=worker_id, busy_delay_s=self.busy_delay_s
        )
        #: What comes after a workflow step (the Worker sets it when there is a backend).
        self.workflows: Workflows | None = None
        self.rates = RateGate(backend, busy_delay_s=self.busy_delay_s)

    def check(self, tasks: list[Task[Any, Any]]) -> None:
        """Raises ConfigurationError when an idempotent task has no ledger to use."""
        idempotent = [t.name for t in tasks if t.options.idempotent]
        if idempotent and self.backend is None:
            raise ConfigurationError(
                f"idempotent tasks {', '.join(idempotent)} need a result backend "
                "(App(results='redis://...')): the effect-once ledger lives there"
            )
        self.slots.check(tasks)
        self.rates.check(tasks)

    @property
    def busy_delay_s(self) -> float:
        return min(MAX_BUSY_DELAY_S, self.lease_s / 2)

    # -- before ------------------------------------------------------------

    async def before_run(self, job: Job) -> Action | None:
        """None: run it. Otherwise the Action that settles the delivery now."""
        backend = self.backend
        if backend is None:
            return None
        # The token first: a run sent back for its token holds no slot meanwhile.
        gate = await self.rates.admit(job)
        if gate is not None:
            return gate
        gate = await self.slots.acquire(job)
        if gate is not None:
            await self.refused(job.held, gate)  # a key that could not be computed
            return gate
        key = job.context.idempotency_key
        if key is not None:
            gate = await self._claim(backend, job, key)
            if gate is not None:
                await self.slots.release(job, ran=False)
                return gate
        if job.task.options.track_started:
            with contextlib.suppress(BrokerError):  # STARTED is informational only
                await backend.store(_record(job, State.STARTED))
        return None

    async def _claim(self, backend: ResultBackend, job: Job, key: str) -> Action | None:
        # One owner per delivery, never per task id: two copies of one id
        # (a duplicate publish, a forged message) held by one worker at once
        # must not both pass as "the same run" and both take the key.
        owner = f"{self._worker_id}:{next(self._claim_numbers)}"
        label = job.held.label
        try:
            claim = await backend.claim(key, owner, job.context.id, self.lease_s)
            if claim.status is ClaimStatus.COMPLETED:
                await self._copy_result(backend, claim.task_id, job)
        except BrokerError as exc:
            logger.warning("task %s: idempotency ledger unreachable (%s); later", label, exc)
            return Action(ActionKind.DEFER, delay_s=self.busy_delay_s, reason="ledger_unreachable")
        if claim.status is ClaimStatus.COMPLETED:
            logger.info("task %s: key %r completed by %s; not run again", label, key, claim.task_id)
            return DUPLICATE
        if claim.status is ClaimStatus.BUSY:
            logger.info(
                "task %s: key %r held by a live run; back in %.1fs", label, key, self.busy_delay_s
            )
            return Action(ActionKind.DEFER, delay_s=self.busy_delay_s, reason="key_busy")
        claimed = _Claimed(key, owner)
        claimed.renewer = self._renewers.start(
            self._renew(backend, claimed, job), name=f"aioack-renew-{job.context.id}"
        )
        self._claims[id(job.held)] = claimed
        return None

    def claim_lost(self, job: Job) -> bool:
        """Whether the run was cancelled because another run took its key."""
        claimed = self._claims.get(id(job.held))
        return claimed is not None and claimed.lost

    async def _copy_result(
        self, backend: ResultBackend, completed_by: str | None, job: Job
    ) -> None:
        """The duplicate's caller gets the first run's result under its own task id."""
        if completed_by is None or completed_by == job.context.id:
            return
        first = await backend.fetch(completed_by)
        if first is not None:
            await backend.store(first.model_copy(update={"task_id": job.context.id}))

    async def _renew(self, backend: ResultBackend, claimed: _Claimed, job: Job) -> None:
        # A third of the lease: two renewals may fail before another run may take over.
        label = job.held.label
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                renewed = await backend.renew(
                    claimed.key, claimed.owner, job.context.id, self.lease_s
                )
            except BrokerError as exc:
                logger.warning("task %s could not renew key %r: %s", label, claimed.key, exc)
                continue
            if not renewed:
                # Two runs of one key must not go on side by side: stop this one.
                logger.warning(
                    "task %s lost key %r to another run; cancelling it", label, claimed.key
                )
                claimed.lost = True
                if job.held.body is not None:
                    job.held.body.cancel()
                return

    # -- after -------------------------------------------------------------

    def interrupted(self, job: Job) -> RunResult | None:
        """The run's outcome when the backend failed under one of its effect blocks.

        Whatever the task did after that (caught the error, returned), the run
        did not make its effects: it is deferred, never completed or failed.
        """
        error = job.context.backend_failure
        if error is None:
            return None
        logger.warning(
            "task %s: result backend failed under an effect block (%s); run deferred",
            job.held.label,
            error,
        )
        outcome = Outcome(OutcomeKind.INTERRUPTED, error=error, countdown=self.busy_delay_s)
        return RunResult(outcome, traceback_text="".join(traceback.format_exception(error)))

    def encode(self, job: Job, result: RunResult) -> RunResult:
        """Dump a returned value to JSON; a value that does not fit fails the run."""
        if self.backend is None or result.outcome.kind is not OutcomeKind.SUCCEEDED:
            return result
        try:
            value = job.task.result_adapter.dump_python(result.value, mode="json", warnings="error")
        except Exception as exc:  # pydantic raises several types; the run failed either way
            return failed(exc)
        return RunResult(result.outcome, value=value)

    async def after_run(self, job: Job, result: RunResult, action: Action) -> Action:
        """Store the run's record, then say how to settle (REQUEUE if the store failed)."""
        await self.slots.release(job, ran=True)  # the run is over: the next may start
        backend, claimed = self.backend, self._claims.pop(id(job.held), None)
        if claimed is not None:
            await self._stop_renewing(claimed)
        if backend is None:
            return action
        record = _final_record(job, result, action)
        try:
            if record is not None and self.workflows is not None and job.message.then is not None:
                # Before the record completes a key and before the ack: a crash or an
                # error from here on leaves a redelivery that publishes the next step again.
                await self.workflows.advance(job, record)
            if claimed is not None and _completes(record):
                await backend.complete(claimed.key, claimed.owner, record)
            elif record is not None:
                await backend.store(record)
        except BrokerError as exc:
            return self._store_failed(job.held, action, record, exc)
        finally:
            if claimed is not None and not claimed.lost and not _completes(record):
                await _release(backend, claimed)
        return action

    def _store_failed(
        self, held: Held, action: Action, record: ResultRecord | None, exc: BrokerError
    ) -> Action:
        assert record is not None
        if not record.state.is_final or held.settled:
            logger.warning("task %s: could not store %s: %s", held.label, record.state.value, exc)
            return action
        logger.error(
            "task %s: could not store %s (%s); not acked, requeued for another run",
            held.label,
            record.state.value,
            exc,
        )
        return REQUEUE

    def holds(self, job: Job) -> bool:
        """Whether the run still holds a claim or a slot (its settle did not happen)."""
        return id(job.held) in self._claims or self.slots.holds(job)

    async def end(self, job: Job) -> None:
        """The run is over, however it ended: its renewer stops, an unfinished claim is
        released (a bug or a cancel between claim and settle must not hold the key)."""
        await self.slots.release(job, ran=False)
        claimed = self._claims.pop(id(job.held), None)
        if claimed is None:
            return
        await self._stop_renewing(claimed)
        if self.backend is not None and not claimed.lost:
            await _release(self.backend, claimed)

    async def aclose(self) -> None:
        """The worker stops: no renewer outlives it."""
        await self._renewers.cancel()
        await self.slots.aclose()

    async def _stop_renewing(self, claimed: _Claimed) -> None:
        if claimed.renewer is not None:
            await self._renewers.cancel([claimed.renewer])

    async def _finished(self, task_id: str) -> bool:
        assert self.backend is not None
        try:
            record = await self.backend.fetch(task_id)
        except BrokerError:
            return False  # unknown: the REVOKED store below is best effort too
        return record is not None and record.state.is_final

    async def refused(self, held: Held, action: Action) -> None:
        """Best effort: a delivery dead-lettered or revoked before it ran still tells
        its callers."""
        message = held.message
        if self.backend is None or message is None:
            return
        if action.kind is ActionKind.DEAD_LETTER:
            state, detail = State.DEAD_LETTERED, action.detail
        elif action == REVOKED:
            if await self._finished(message.id):  # ran before (crash between store and ack)
                return
            state, detail = State.REVOKED, "revoked before it ran"
        else:
            return
        record = ResultRecord(
            task_id=message.id,
            state=state,
            task=message.task,
            attempt=message.attempt,
            error_type=action.reason,
            error_message=detail,
        )
        try:
            await self.backend.store(record)
        except BrokerError as exc:
            logger.warning("task %s: could not store %s: %s", held.label, state.value, exc)
        await stopped_quietly(self.workflows, message, record)


def _completes(record: ResultRecord | None) -> TypeGuard[ResultRecord]:
    """Only a success completes a key; anything else frees it for the next run."""
    return record is not None and record.state is State.SUCCESS


def _record(job: Job, state: State, **fields: object) -> ResultRecord:
    ctx = job.context
    return ResultRecord(
        task_id=ctx.id,
        state=state,
        task=ctx.task_name,
        attempt=ctx.attempt,
        **fields,  # type: ignore[arg-type]
    )


def _final_record(job: Job, result: RunResult, action: Action) -> ResultRecord | None:
    """The record a run leaves; None when another run has it now (lost, claim lost)."""
    outcome = result.outcome
    if outcome.kind is OutcomeKind.SUCCEEDED:
        return _record(job, State.SUCCESS, result=result.value)
    if outcome.kind in (OutcomeKind.LOST, OutcomeKind.CLAIM_LOST, OutcomeKind.SLOT_LOST):
        return None
    if outcome.kind is OutcomeKind.SHUTDOWN:
        return _shutdown_record(job, action)
    if outcome.kind is OutcomeKind.REVOKED:
        return _record(
            job,
            State.REVOKED,
            error_type="revoked",
            error_message="revoked with terminate=True while running: cancelled",
        )
    error = outcome.error
    details: dict[str, object] = {
        "error_type": _type_name(error) if error is not None else "Reject",
        "error_message": str(error) if error is not None else outcome.reason,
        "traceback": result.traceback_text,
    }
    if action.kind in (ActionKind.RETRY, ActionKind.REQUEUE, ActionKind.DEFER):
        return _record(job, State.RETRY, **details)
    if outcome.kind is OutcomeKind.REJECTED:
        return _record(job, State.DEAD_LETTERED, **details)
    return _record(job, State.FAILURE, **details)


def _shutdown_record(job: Job, action: Action) -> ResultRecord:
    """A run the worker's stop cancelled must not read STARTED for ever: handed back,
    it runs again (RETRY); acked early (acks_late=False), it never will (FAILURE)."""
    if action.kind is ActionKind.REQUEUE:
        return _record(
            job,
            State.RETRY,
            error_type="shutdown",
            error_message="the worker stopped while it ran: cancelled and requeued, it runs again",
        )
    return _record(
        job,
        State.FAILURE,
        error_type="shutdown",
        error_message="the worker stopped while it ran: cancelled; acked early "
        "(acks_late=False), so it does not run again",
    )


def _type_name(error: BaseException) -> str:
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


async def _release(backend: ResultBackend, claimed: _Claimed) -> None:
    # Best effort: an unreleased claim frees itself when its lease runs out.
    with contextlib.suppress(BrokerError):
        await backend.release(claimed.key, claimed.owner)
