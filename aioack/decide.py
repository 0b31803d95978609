"""The ack contract as pure functions: what happened -> what to do.

``admit()`` rules on a delivery before it runs; ``decide()`` on the outcome
of a run. Neither does I/O: the AckManager carries out the Action. Every row
of the contract table in docs/ack-contract.md maps to a case here, and
tests/unit/test_decide.py checks each row.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

from aioack.errors import TimeLimitExceeded
from aioack.options import TaskOptions


class OutcomeKind(enum.Enum):
    SUCCEEDED = "succeeded"
    RETRY_REQUESTED = "retry_requested"  # the task raised Retry
    FAILED = "failed"  # the task raised an exception
    TIMED_OUT = "timed_out"  # cancelled by time_limit
    REJECTED = "rejected"  # the task raised Reject
    LOST = "lost"  # the delivery was lost mid-run (lease, connection): run cancelled
    SHUTDOWN = "shutdown"  # still running at the shutdown deadline: cancelled
    CLAIM_LOST = "claim_lost"  # effect-once: another run took the key over; cancelled
    #: The result backend failed under a ``ctx.effect()`` block: the block's
    #: writes were not committed (or were, with their mark). Not the task's fault.
    INTERRUPTED = "interrupted"
    #: ``app.revoke(id, terminate=True)`` cancelled the run: never retried.
    REVOKED = "revoked"
    #: Per-key concurrency: the run's slot lapsed and another run took it;
    #: cancelled. Not the task's fault, and a different message holds the slot.
    SLOT_LOST = "slot_lost"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    error: BaseException | None = None
    #: Retry(countdown=...): overrides the backoff for this retry.
    countdown: float | None = None
    #: Reject(requeue=...).
    requeue: bool = False
    reason: str = ""


class ActionKind(enum.Enum):
    ACK = "ack"
    RETRY = "retry"  # publish attempt + 1 after delay_s, then ack
    #: Publish the same message (same attempt) after delay_s, then ack: the
    #: run could not start or finish for a reason outside the task (its key is
    #: busy, the result backend is unreachable). Not counted as an attempt.
    DEFER = "defer"
    DEAD_LETTER = "dead_letter"
    REQUEUE = "requeue"  # back on the queue now, counted as a delivery
    RELEASE = "release"  # back on the queue now, never started
    NOTHING = "nothing"  # settled already (early/manual ack) or not ours to settle


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    delay_s: float = 0.0
    #: For DEAD_LETTER: a stable code (see DeadLetter.reason).
    reason: str = ""
    detail: str = ""


ACK = Action(ActionKind.ACK)
REQUEUE = Action(ActionKind.REQUEUE)
RELEASE = Action(ActionKind.RELEASE)
NOTHING = Action(ActionKind.NOTHING)
#: A revoked task: acked without running it (or after cancelling its run);
#: its result state becomes REVOKED. Deliberate, so not a dead letter.
REVOKED = Action(ActionKind.ACK, reason="revoked")


def dead_letter(reason: str, detail: str = "") -> Action:
    return Action(ActionKind.DEAD_LETTER, reason=reason, detail=detail)


def admit(
    options: TaskOptions,
    *,
    delivery_count: int,
    redelivered: bool,
    expired: bool,
    revoked: bool = False,
) -> Action | None:
    """Rule on a decoded delivery before running it: None means run it.

    Bad input (undecodable, unknown task, invalid arguments, too large) is
    dead-lettered before this is reached, by the worker's decoding step.
    """
    if revoked:  # first: whatever else is wrong with it, nobody wants it run
        return REVOKED
    if delivery_count > options.delivery_limit:
        return dead_letter(
            "delivery_limit",
            f"delivered {delivery_count} times, limit {options.delivery_limit}",
        )
    if redelivered and not options.reject_on_worker_lost:
        return dead_letter(
            "worker_lost", "redelivered after an abandoned run; reject_on_worker_lost=False"
        )
    if expired:
        return dead_letter("expired", "the message expired before it could run")
    return None


def decide(
    outcome: Outcome,
    *,
    attempt: int,
    options: TaskOptions,
    settled: bool,
    rand: Callable[[], float] = random.random,
) -> Action:
    """Map a run's outcome to an action.

    ``settled`` is True when the delivery was already acked (early ack, or
    the task called ``ctx.ack()``): then RETRY and DEAD_LETTER act on a copy.
    """
    kind = outcome.kind
    if kind is OutcomeKind.SUCCEEDED:
        return NOTHING if settled else ACK
    if kind is OutcomeKind.REVOKED:
        return NOTHING if settled else REVOKED
    if kind is OutcomeKind.SLOT_LOST:
        # The same message later, on a copy when acked early: the run must not
        # be lost with it (the slot's new holder is another message).
        return Action(ActionKind.DEFER, delay_s=outcome.countdown or 0.0, reason="slot_lost")
    if kind is OutcomeKind.INTERRUPTED:
        # An outage is not a failure of the task: run the same attempt later
        # (on a copy when acked early). Effect marks keep the rerun's effects once.
        return Action(ActionKind.DEFER, delay_s=outcome.countdown or 0.0)
    if kind in (OutcomeKind.LOST, OutcomeKind.SHUTDOWN, OutcomeKind.CLAIM_LOST):
        # Never ack what did not finish: the broker redelivers it. A requeued
        # CLAIM_LOST delivery meets the key's new holder at its next claim.
        return NOTHING if settled or kind is OutcomeKind.LOST else REQUEUE
    if kind is OutcomeKind.REJECTED:
        if outcome.requeue:
            return Action(ActionKind.RETRY) if settled else REQUEUE
        return dead_letter("rejected", outcome.reason)
    if kind is OutcomeKind.RETRY_REQUESTED:
        if options.retries_left(attempt):
            return Action(
                ActionKind.RETRY, delay_s=retry_delay_s(options, attempt, outcome.countdown, rand)
            )
        return _failed_for_good(
            options,
            settled,
            "max_retries",
            f"Retry after attempt {attempt}; max_retries={options.max_retries}",
        )
    error = outcome.error
    if kind is OutcomeKind.TIMED_OUT and error is None:
        error = TimeLimitExceeded(f"time_limit {options.time_limit}s exceeded")
    if isinstance(error, options.autoretry_for) and options.retries_left(attempt):
        return Action(ActionKind.RETRY, delay_s=retry_delay_s(options, attempt, None, rand))
    reason = "timeout" if kind is OutcomeKind.TIMED_OUT else "failed"
    return _failed_for_good(options, settled, reason, _describe(error))


def _failed_for_good(options: TaskOptions, settled: bool, reason: str, detail: str) -> Action:
    if not settled and not options.acks_on_failure_or_timeout:
        return REQUEUE  # delivery_limit dead-letters it when it keeps failing
    return dead_letter(reason, detail)


def retry_delay_s(
    options: TaskOptions,
    attempt: int,
    countdown: float | None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before attempt ``attempt + 1``: exponential backoff, full jitter, capped."""
    if countdown is not None:
        return countdown
    if options.retry_backoff is False:
        return options.default_retry_delay
    base_s = 1.0 if options.retry_backoff is True else float(options.retry_backoff)
    exponent = min(attempt - 1, 64)  # 2**64 s is past any cap; avoids overflow
    delay_s = min(options.retry_backoff_max, base_s * 2.0**exponent)
    return delay_s * rand() if options.retry_jitter else delay_s


def _describe(error: BaseException | None) -> str:
    if error is None:
        return ""
    return f"{type(error).__name__}: {error}"
