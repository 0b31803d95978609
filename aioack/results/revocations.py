"""What every result backend shares about revocations: their bounds and their
decoding from what a store holds (hostile: anything may have written there)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable

from aioack.results.base import Revocation

logger = logging.getLogger("aioack.results")

#: Longest a revocation may last (seconds): 7 days. The stores trim what is older.
MAX_REVOKE_EXPIRES_S = 7 * 86_400.0
#: How long a revocation lasts unless told (seconds): three hours, Celery's REVOKE_EXPIRES.
DEFAULT_REVOKE_EXPIRES_S = 3 * 3_600.0
#: Ids one revoke() call takes at most.
MAX_IDS_PER_CALL = 10_000
#: Revocations one read returns at most; the reader asks again for the rest.
READ_BATCH = 1_000
_MAX_ID = 200


def decode(task_id: object, terminate: object, expires_at: object) -> Revocation | None:
    """A revocation from stored fields, or None (logged) when they are not one.

    An expiry further off than MAX_REVOKE_EXPIRES_S is brought back to it: no
    entry written by someone else may outlive what ``revoke()`` allows.
    """
    if task_id is None or terminate is None or expires_at is None:
        logger.warning("a stored revocation lacks a field (ignored)")
        return None
    try:
        text_id = task_id.decode() if isinstance(task_id, bytes) else str(task_id)
        flag = terminate.decode() if isinstance(terminate, bytes) else str(terminate)
        until = float(expires_at.decode() if isinstance(expires_at, bytes) else str(expires_at))
    except (UnicodeDecodeError, ValueError, TypeError):
        until, text_id, flag = math.nan, "", ""
    if (
        not 0 < len(text_id) <= _MAX_ID
        or not text_id.isprintable()
        or flag not in ("0", "1")
        or not math.isfinite(until)
    ):
        logger.warning("a stored revocation is not one (ignored): %r", (task_id, terminate))
        return None
    return Revocation(text_id, flag == "1", min(until, time.time() + MAX_REVOKE_EXPIRES_S))


def live(revocations: Iterable[Revocation], now: float) -> list[Revocation]:
    return [r for r in revocations if r.expires_at > now]


def check_revoke_expires(seconds: float, name: str) -> float:
    """Seconds a revocation lasts, checked.

    Raises:
        ValueError: not a number of seconds in (0, 7 days].
    """
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds <= MAX_REVOKE_EXPIRES_S
    ):
        raise ValueError(f"{name} must be seconds in (0, 604800] (7 days), got {seconds!r}")
    return float(seconds)


def check_task_ids(task_ids: list[object]) -> list[str]:
    """Task ids to revoke, checked: bad ones fail the call, nothing is revoked.

    Raises:
        ValueError: none, too many, or one that is not 1-200 printable characters.
    """
    if not task_ids:
        raise ValueError("revoke: no task id given")
    if len(task_ids) > MAX_IDS_PER_CALL:
        raise ValueError(f"revoke: {len(task_ids)} ids in one call; at most {MAX_IDS_PER_CALL}")
    for task_id in task_ids:
        if (
            not isinstance(task_id, str)
            or not 0 < len(task_id) <= _MAX_ID
            or not task_id.isprintable()
        ):
            raise ValueError(f"revoke: {task_id!r} is not a task id (1-200 printable characters)")
    return list(dict.fromkeys(task_ids))  # type: ignore[arg-type]  # all str, checked above
