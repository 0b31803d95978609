"""Workflows, the worker's side: what comes after a run of a chain step or chord member.

``ResultFlow`` calls ``advance`` once a run's record is known and *before*
that record completes an idempotency key and before the delivery is acked
(late ack). So a worker killed anywhere in between leaves a redelivery that
runs the step again and publishes the next step again: a duplicate, never a
loss. The next step's task id is derived from the workflow id and its index,
so a duplicate is the same task id twice (see docs/workflows.md for what two
messages of one id do).

- A chain step that succeeded keeps a copy of its record (``_kept``), then
  publishes the next step, its result prepended to the next step's arguments
  (unless that step is immutable, ``.si()``).
- A chord member that succeeded stores its record, then counts itself in the
  backend (``chord_member_done``, atomic: a duplicate counts once); the call
  that completes the set publishes the callback with every member's result.
  The callback carries its task id as idempotency key, so copies of it (a
  member redelivered after firing) run it once.
- A step or member that failed for good (FAILURE, DEAD_LETTERED, REVOKED)
  stores that failure as the workflow's result, saying which step and why:
  the caller's ``get()`` raises it instead of waiting for ever. Unless a copy
  of it succeeded before (its kept record): then this run was a duplicate,
  the workflow went on from that success, and the failure only goes on as
  the success did (publish the next step, count the member) again, so a
  success whose publish or count never happened is not lost either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from aioack.brokers.base import BrokerCore
from aioack.errors import BrokerError, InvalidArguments, MessageTooLarge
from aioack.limits import publish_bounded
from aioack.message import Continuation, Message, Step, callback_id, step_id, summarize
from aioack.results.base import ResultBackend, ResultRecord, State

if TYPE_CHECKING:
    from aioack.task import Task
    from aioack.worker.runner import Job

logger = logging.getLogger("aioack.worker")


class Workflows:
    """Publishes the next step of a workflow, counts chord members, reports failures."""

    def __init__(
        self,
        tasks: Mapping[str, Task[Any, Any]],
        broker: BrokerCore,
        backend: ResultBackend,
        *,
        max_message_bytes: int,
    ) -> None:
        self._tasks = tasks
        self._broker = broker
        self._backend = backend
        self._max_bytes = max_message_bytes
        self._declared: set[str] = set()

    async def advance(self, job: Job, record: ResultRecord) -> None:
        """Do what comes after this run; call before its delivery is settled.

        Raises:
            BrokerError: the next step (or the chord count) may not have been
                made: do not ack, let the run happen again.
        """
        message, then = job.message, job.message.then
        assert then is not None
        if record.state is State.SUCCESS:
            await self._succeeded(then, record)
        elif record.state.is_final:
            await self.stopped(message, record)

    async def _succeeded(self, then: Continuation, record: ResultRecord) -> None:
        if then.chord is not None:
            await self._member_done(then, record)
        elif then.rest:
            # Kept before the publish: a duplicate of this step that fails later
            # (or is dead-lettered) finds it and goes on from it (see stopped).
            await self._backend.store(record.model_copy(update={"task_id": _kept(then)}))
            await self._publish_next(then, record.result)

    async def stopped(self, message: Message, record: ResultRecord) -> None:
        """A step that failed for good fails the workflow's result with its error.

        Raises:
            BrokerError: not stored.
        """
        then = message.then
        assert then is not None
        if then.result_id == message.id:  # the last step: its own record says it all
            return
        succeeded = await self._backend.fetch(_kept(then))
        if succeeded is not None and succeeded.state is State.SUCCESS:
            # A duplicate failed, but a copy of this step succeeded: the workflow
            # went on from that success, so go on as it did (a duplicate publish or
            # count, as its own redelivery would make), never fail the workflow.
            await self._succeeded(then, succeeded)
            return
        why = record.error_message or record.error_type or "no detail"
        await self._fail(
            then,
            state=record.state,
            error_type=record.error_type,
            error_message=f"{_place(then, message)} {record.state.value}: {why}",
            traceback=record.traceback,
        )

    # -- chains ---------------------------------------------------------------

    async def _publish_next(self, then: Continuation, result: Any) -> None:
        step, *rest = then.rest
        index = then.step + 1
        after = Continuation(workflow=then.workflow, step=index, rest=rest)
        args = step.args if step.immutable else [result, *step.args]
        what = f"chain step {index} ({step.task})"
        await self._send(then, step, step_id(then.workflow, index), args, after, what)

    # -- chords ---------------------------------------------------------------

    async def _member_done(self, then: Continuation, record: ResultRecord) -> None:
        link = then.chord
        assert link is not None
        # The callback reads every member's result from a copy only a success
        # writes: the member's own record may read STARTED again meanwhile (a
        # duplicate delivery of it running), and must not fail the chord.
        await self._backend.store(record.model_copy(update={"task_id": _kept(then)}))
        member = step_id(then.workflow, link.member)
        if not await self._backend.chord_member_done(then.workflow, member, link.size):
            return
        results: list[Any] = []
        for index in range(link.size):
            found = await self._backend.fetch(_kept_member(then, index))
            if found is None:  # counted, so it was stored: the results expired since
                await self._fail(
                    then,
                    state=State.FAILURE,
                    error_type="ChordMemberLost",
                    error_message=f"chord member {index} of {link.size}: its result expired",
                )
                return
            results.append(found.result)
        callback = link.callback
        args = callback.args if callback.immutable else [results, *callback.args]
        what = f"chord callback ({callback.task})"
        await self._send(then, callback, callback_id(then.workflow), args, None, what)

    # -- publishing -------------------------------------------------------------

    async def _send(
        self,
        then: Continuation,
        step: Step,
        task_id: str,
        args: list[Any],
        after: Continuation | None,
        what: str,
    ) -> None:
        """Publish a step; one that can never be published fails the workflow instead."""
        try:
            body = self._body(step, task_id, args, after)
        except (InvalidArguments, MessageTooLarge, ValueError) as exc:
            logger.warning("workflow %s: %s cannot run: %s", then.workflow, what, exc)
            await self._fail(
                then,
                state=State.FAILURE,
                error_type=type(exc).__name__,
                error_message=f"{what} cannot run: {exc}",
            )
            return
        if step.queue not in self._declared:
            await self._broker.declare([step.queue])
            self._declared.add(step.queue)
        broker = self._broker
        await publish_bounded(
            lambda: broker.publish(step.queue, body, message_id=task_id),
            step.queue,
            broker.limits.get(step.queue),
        )
        logger.info("workflow %s: %s published as %s", then.workflow, what, task_id)

    def _body(self, step: Step, task_id: str, args: list[Any], after: Continuation | None) -> bytes:
        """The next message, checked as its worker will check it (when this worker has
        the task): arguments that cannot fit fail now, where the workflow learns of it.

        Raises:
            InvalidArguments, MessageTooLarge, ValueError: it can never run.
        """
        task = self._tasks.get(step.task)
        if task is not None:
            task.signature.from_wire(args, step.kwargs, None)
        try:
            message = Message(
                id=task_id,
                task=step.task,
                args=args,
                kwargs=step.kwargs,
                published_at=time.time(),
                # A chord's callback runs once, however many copies of it are published.
                idempotency_key=task_id if after is None else None,
                then=after,
            )
        except ValidationError as exc:
            raise ValueError(summarize(exc)) from exc
        return message.encode(self._max_bytes)

    async def _fail(
        self,
        then: Continuation,
        *,
        state: State,
        error_type: str | None,
        error_message: str,
        traceback: str | None = None,
    ) -> None:
        name = then.chord.callback.task if then.chord else (then.rest[-1].task if then.rest else "")
        record = ResultRecord(
            task_id=then.result_id,
            state=state,
            task=name,
            error_type=error_type,
            error_message=error_message[:2000],
            traceback=traceback,
        )
        await self._backend.store(record)


def _kept(then: Continuation) -> str:
    """Where this step's (or chord member's) successful record is kept."""
    if then.chord is not None:
        return _kept_member(then, then.chord.member)
    return f"{step_id(then.workflow, then.step)}.chain"


def _kept_member(then: Continuation, member: int) -> str:
    """Where a chord member's successful result is kept for the callback."""
    return f"{step_id(then.workflow, member)}.chord"


def _place(then: Continuation, message: Message) -> str:
    """Which step of its workflow a message is, for the workflow's error."""
    if then.chord is not None:
        link = then.chord
        return f"chord member {link.member} of {link.size} ({message.task}[{message.id}])"
    total = then.step + len(then.rest) + 1
    return f"chain step {then.step} of {total} ({message.task}[{message.id}])"


async def stopped_quietly(
    workflows: Workflows | None, message: Message, record: ResultRecord
) -> None:
    """``stopped`` for a delivery refused before it ran: best effort, as its own record."""
    if workflows is None or message.then is None:
        return
    try:
        await workflows.stopped(message, record)
    except BrokerError as exc:
        logger.warning(
            "task %s[%s]: could not fail its workflow: %s", message.task, message.id, exc
        )
