"""The ack contract, row by row (docs/ack-contract.md), as a table.

Each row: the task's options, what happened, whether the delivery was already
acked (early or manual ack), and the action the contract demands.
"""

from __future__ import annotations

from typing import Any

import pytest

from aioack.decide import ActionKind, Outcome, OutcomeKind, admit, decide, retry_delay_s
from aioack.errors import Reject, Retry, TimeLimitExceeded
from aioack.options import TaskOptions

LATE: dict[str, Any] = {}
EARLY: dict[str, Any] = {"acks_late": False}
NO_DLQ: dict[str, Any] = {"acks_on_failure_or_timeout": False}
AUTORETRY: dict[str, Any] = {"autoretry_for": (ConnectionError,)}
RETRY_TIMEOUTS: dict[str, Any] = {"autoretry_for": (TimeLimitExceeded,)}

OK = Outcome(OutcomeKind.SUCCEEDED)
RETRY = Outcome(OutcomeKind.RETRY_REQUESTED, error=Retry())
FAILED = Outcome(OutcomeKind.FAILED, error=ValueError("boom"))
TRANSIENT = Outcome(OutcomeKind.FAILED, error=ConnectionError("reset"))
TIMED_OUT = Outcome(OutcomeKind.TIMED_OUT, error=TimeLimitExceeded("late"))
REJECT_DROP = Outcome(OutcomeKind.REJECTED, requeue=False, reason="bad")
REJECT_REQUEUE = Outcome(OutcomeKind.REJECTED, requeue=True, reason="later")
LOST = Outcome(OutcomeKind.LOST)
SHUTDOWN = Outcome(OutcomeKind.SHUTDOWN)
CLAIM_LOST = Outcome(OutcomeKind.CLAIM_LOST)
INTERRUPTED = Outcome(OutcomeKind.INTERRUPTED, error=ConnectionError("cut"), countdown=0.5)
REVOKED = Outcome(OutcomeKind.REVOKED)
SLOT_LOST = Outcome(OutcomeKind.SLOT_LOST)

# (row, options, outcome, attempt, settled, expected action, dead-letter reason)
# fmt: off
DECIDE_TABLE = [
    ("returned, late ack", LATE, OK, 1, False, ActionKind.ACK, ""),
    ("returned, early ack", EARLY, OK, 1, True, ActionKind.NOTHING, ""),
    ("returned after manual ctx.ack()", LATE, OK, 1, True, ActionKind.NOTHING, ""),
    ("Retry raised, retries left", LATE, RETRY, 1, False, ActionKind.RETRY, ""),
    ("Retry raised, early ack: copy", EARLY, RETRY, 1, True, ActionKind.RETRY, ""),
    ("autoretry_for match, retries left", AUTORETRY, TRANSIENT, 3, False, ActionKind.RETRY, ""),
    ("Retry raised, retries exhausted", LATE, RETRY, 4, False, ActionKind.DEAD_LETTER, "max_retries"),
    ("autoretry_for, retries exhausted", AUTORETRY, TRANSIENT, 4, False, ActionKind.DEAD_LETTER, "failed"),
    ("failed, not retryable", LATE, FAILED, 1, False, ActionKind.DEAD_LETTER, "failed"),
    ("failed, acks_on_failure_or_timeout=False", NO_DLQ, FAILED, 1, False, ActionKind.REQUEUE, ""),
    ("failed, early ack: dead-letter a copy", EARLY, FAILED, 1, True, ActionKind.DEAD_LETTER, "failed"),
    ("failed after manual ack: copy", LATE, FAILED, 1, True, ActionKind.DEAD_LETTER, "failed"),
    ("time_limit exceeded", LATE, TIMED_OUT, 1, False, ActionKind.DEAD_LETTER, "timeout"),
    ("time_limit exceeded, retried", RETRY_TIMEOUTS, TIMED_OUT, 1, False, ActionKind.RETRY, ""),
    ("time_limit, acks_on_failure_or_timeout=False", NO_DLQ, TIMED_OUT, 1, False, ActionKind.REQUEUE, ""),
    ("Reject(requeue=False)", LATE, REJECT_DROP, 1, False, ActionKind.DEAD_LETTER, "rejected"),
    ("Reject(requeue=True)", LATE, REJECT_REQUEUE, 1, False, ActionKind.REQUEUE, ""),
    ("connection/lease lost mid-run", LATE, LOST, 1, False, ActionKind.NOTHING, ""),
    ("running at the shutdown deadline", LATE, SHUTDOWN, 1, False, ActionKind.REQUEUE, ""),
    ("shutdown deadline, early ack", EARLY, SHUTDOWN, 1, True, ActionKind.NOTHING, ""),
    ("effect-once key taken over mid-run", LATE, CLAIM_LOST, 1, False, ActionKind.REQUEUE, ""),
    ("key taken over, early ack", EARLY, CLAIM_LOST, 1, True, ActionKind.NOTHING, ""),
    ("backend outage under an effect block", LATE, INTERRUPTED, 4, False, ActionKind.DEFER, ""),
    ("backend outage, early ack: copy", EARLY, INTERRUPTED, 1, True, ActionKind.DEFER, ""),
    ("revoked with terminate=True mid-run", LATE, REVOKED, 1, False, ActionKind.ACK, "revoked"),
    ("revoked mid-run, early ack", EARLY, REVOKED, 2, True, ActionKind.NOTHING, ""),
    ("revoked mid-run, retries left: not retried", AUTORETRY, REVOKED, 1, False, ActionKind.ACK, "revoked"),
    ("concurrency slot taken mid-run", LATE, SLOT_LOST, 1, False, ActionKind.DEFER, "slot_lost"),
    ("slot taken, early ack: a copy later", EARLY, SLOT_LOST, 1, True, ActionKind.DEFER, "slot_lost"),
]
# fmt: on


@pytest.mark.parametrize(
    ("options", "outcome", "attempt", "settled", "kind", "reason"),
    [row[1:] for row in DECIDE_TABLE],
    ids=[row[0] for row in DECIDE_TABLE],
)
def test_decide_follows_the_contract_table(
    options: dict[str, Any],
    outcome: Outcome,
    attempt: int,
    settled: bool,
    kind: ActionKind,
    reason: str,
) -> None:
    task_options = TaskOptions(name="t", **options)
    action = decide(outcome, attempt=attempt, options=task_options, settled=settled)
    assert action.kind is kind
    assert action.reason == reason


# (row, options, delivery_count, redelivered, expired, revoked,
#  expected (action, reason) or None = run)
DL = ActionKind.DEAD_LETTER
# fmt: off
ADMIT_TABLE = [
    ("first delivery runs", {}, 1, False, False, False, None),
    ("redelivered after worker lost, default: run again", {}, 2, True, False, False, None),
    ("redelivered, reject_on_worker_lost=False", {"reject_on_worker_lost": False}, 2, True, False, False, (DL, "worker_lost")),
    ("delivery count at the limit still runs", {"delivery_limit": 3}, 3, True, False, False, None),
    ("delivery count over the limit (crash loop)", {"delivery_limit": 3}, 4, True, False, False, (DL, "delivery_limit")),
    ("expired before it ran", {}, 1, False, True, False, (DL, "expired")),
    ("revoked before it ran: acked, not run", {}, 1, False, False, True, (ActionKind.ACK, "revoked")),
    ("revoked and past its limit: revoked wins", {"delivery_limit": 3}, 4, True, True, True, (ActionKind.ACK, "revoked")),
]
# fmt: on


@pytest.mark.parametrize(
    ("options", "count", "redelivered", "expired", "revoked", "expected"),
    [row[1:] for row in ADMIT_TABLE],
    ids=[row[0] for row in ADMIT_TABLE],
)
def test_admit_follows_the_contract_table(
    options: dict[str, Any],
    count: int,
    redelivered: bool,
    expired: bool,
    revoked: bool,
    expected: tuple[ActionKind, str] | None,
) -> None:
    action = admit(
        TaskOptions(name="t", **options),
        delivery_count=count,
        redelivered=redelivered,
        expired=expired,
        revoked=revoked,
    )
    if expected is None:
        assert action is None
    else:
        assert action is not None
        assert (action.kind, action.reason) == expected


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    options = TaskOptions(name="t", retry_backoff=2.0, retry_backoff_max=10.0, retry_jitter=False)
    assert [retry_delay_s(options, n, None) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert retry_delay_s(options, 10_000, None) == 10.0, "a huge attempt must not overflow"


def test_full_jitter_draws_between_zero_and_the_backoff() -> None:
    options = TaskOptions(name="t", retry_backoff=True, retry_backoff_max=600.0)
    assert retry_delay_s(options, 3, None, rand=lambda: 0.0) == 0.0
    assert retry_delay_s(options, 3, None, rand=lambda: 0.5) == 2.0
    assert retry_delay_s(options, 3, None, rand=lambda: 1.0) == 4.0


def test_retry_countdown_overrides_backoff_and_no_backoff_uses_default_delay() -> None:
    options = TaskOptions(name="t", retry_backoff=False, default_retry_delay=7.0)
    assert retry_delay_s(options, 1, 0.25) == 0.25
    assert retry_delay_s(options, 5, None) == 7.0
    retry = decide(
        Outcome(OutcomeKind.RETRY_REQUESTED, countdown=3.0),
        attempt=1,
        options=options,
        settled=False,
    )
    assert retry.delay_s == 3.0


def test_unlimited_retries_when_max_retries_is_none() -> None:
    options = TaskOptions(name="t", max_retries=None)
    action = decide(RETRY, attempt=1000, options=options, settled=False)
    assert action.kind is ActionKind.RETRY


def test_control_flow_exceptions_are_outside_the_error_root() -> None:
    from aioack.errors import AioackError

    assert not issubclass(Retry, AioackError)
    assert not issubclass(Reject, AioackError)


def test_a_deferred_run_waits_the_outcomes_countdown_and_keeps_its_attempt() -> None:
    # DEFER sends the same message (same attempt) back: even past max_retries
    # an outage never turns into a dead letter.
    options = TaskOptions(name="t", max_retries=0)
    action = decide(INTERRUPTED, attempt=1, options=options, settled=False)
    assert (action.kind, action.delay_s) == (ActionKind.DEFER, 0.5)
