"""Unique enqueue, the producer's part: checking the options and naming the key.

``apply_async(unique_for=..., unique_key=...)`` reserves the key in the
result backend before publishing (docs/task-control.md, "Unique enqueue").
Here only what needs no I/O: bad options fail at the call site, before
anything is reserved or published.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: The longest window a unique key may be held: 30 days, in seconds. Longer
#: is not a publish window but a ledger; use effect-once for that.
MAX_UNIQUE_FOR_S = 30 * 86_400.0
#: The longest ``unique_key`` a caller may give (the stored key adds the task name).
MAX_UNIQUE_KEY_CHARS = 200


def unique_window_s(unique_for: float | None, unique_key: str | None) -> float | None:
    """The window in seconds, or None when unique enqueue is off.

    Raises:
        ValueError: ``unique_key`` without ``unique_for``, or a window that
            is not a number of seconds in (0, MAX_UNIQUE_FOR_S].
    """
    if unique_for is None:
        if unique_key is not None:
            raise ValueError("unique_key needs unique_for=<seconds>: how long the key stays taken")
        return None
    if isinstance(unique_for, bool) or not isinstance(unique_for, int | float):
        raise ValueError(f"unique_for must be a number of seconds, not {unique_for!r}")
    if not 0 < unique_for <= MAX_UNIQUE_FOR_S:  # NaN fails this too
        raise ValueError(
            f"unique_for must be > 0 and at most {MAX_UNIQUE_FOR_S:.0f} seconds (30 days), "
            f"not {unique_for!r}"
        )
    return float(unique_for)


def stored_key(
    task_name: str, unique_key: str | None, wire_args: list[Any], wire_kwargs: dict[str, Any]
) -> str:
    """The key the backend holds: ``{task name}:{unique_key or the call's digest}``.

    Scoped by task name, so two tasks never share a key by accident. Without
    a ``unique_key``, the digest of the validated arguments stands in: the
    same call (same task, same arguments as sent on the wire) is one key.

    Raises:
        ValueError: ``unique_key`` is not 1 to MAX_UNIQUE_KEY_CHARS printable
            characters.
    """
    if unique_key is None:
        return f"{task_name}:{call_digest(task_name, wire_args, wire_kwargs)}"
    if not isinstance(unique_key, str) or not 0 < len(unique_key) <= MAX_UNIQUE_KEY_CHARS:
        raise ValueError(f"unique_key must be a string of 1 to {MAX_UNIQUE_KEY_CHARS} characters")
    if not unique_key.isprintable():
        raise ValueError("unique_key must be printable: no control characters, newlines or tabs")
    return f"{task_name}:{unique_key}"


def call_digest(task_name: str, wire_args: list[Any], wire_kwargs: dict[str, Any]) -> str:
    """SHA-256 (hex) of the task name and arguments as canonical JSON (sorted keys)."""
    canonical = json.dumps(
        [task_name, wire_args, wire_kwargs],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
