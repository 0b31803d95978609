"""Dead letters: what one is, which ones a selection picks, and what a replay publishes.

Pure: no I/O. Every broker's dead-letter tools (list, show, replay, purge)
choose letters here, in one place; a broker only reads and moves them (see
``LetterPass`` in ``base``).
"""

from __future__ import annotations

import json
import math
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from aioack.errors import ConfigurationError, MalformedMessage, MessageTooLarge
from aioack.message import decode

__all__ = [
    "REASONS",
    "DeadLetter",
    "LetterFilter",
    "letter_time",
    "replay_copy",
    "task_of",
    "time_to_store",
]

#: Every reason a dead letter can carry: aioack's own, then RabbitMQ's (a
#: letter RabbitMQ dead-lettered itself), then ``unknown`` (a letter whose
#: headers say nothing).
REASONS = (
    "malformed",
    "too_large",
    "unknown_task",
    "invalid_arguments",
    "failed",
    "max_retries",
    "timeout",
    "rejected",
    "delivery_limit",
    "worker_lost",
    "expired",
    "queue_full",
    "no_results",
    "maxlen",
    "unknown",
)

#: The most ids, reasons or task names one selection may list.
MAX_VALUES = 1000
#: A value of a selection (an id, a reason, a task name): 1-200 printable characters.
MAX_VALUE_CHARS = 200
#: The largest body ``task_of`` parses to find the task's name; a larger one
#: (only a ``too_large`` letter can be) is not parsed, its task is unknown.
MAX_PARSED_BODY = 16 * 1024 * 1024
#: The latest time a letter read back may carry (Unix seconds: 2106-02-07);
#: the earliest is 0 (1970). Outside, the time is unknown (see ``letter_time``).
MAX_LETTER_TIME = float(2**32)
#: The longest text a letter's time is parsed from (a float's repr is 24 at most).
MAX_TIME_CHARS = 40


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message removed from its queue for good, with why."""

    queue: str
    #: Short, stable cause: one of ``REASONS``.
    reason: str
    body: bytes
    detail: str = ""
    #: ``"ValueError: boom"`` for task failures, else None.
    error: str | None = None
    traceback: str | None = None
    delivery_count: int = 1
    #: The task attempt that failed, when the body could be decoded.
    attempt: int | None = None
    message_id: str | None = None
    #: Unix seconds; None when unknown: the broker held no readable time for it
    #: (anyone who can write the dead-letter store can write any value there;
    #: see ``letter_time``).
    dead_lettered_at: float | None = field(default_factory=time.time)
    #: The broker's name for this letter, to act on it: a stream entry id
    #: (Redis), a row id (SQLite), a letter id header (RabbitMQ), a counter
    #: (memory). Set by the broker when it reads a letter back; one given to
    #: ``add_dead_letter`` is not kept.
    id: str | None = None

    @property
    def task(self) -> str | None:
        """The task's name, read from the body; None when the body is no envelope."""
        return task_of(self.body)

    def age_s(self, now: float) -> float | None:
        """Seconds since it was dead-lettered (0 for a stamp in the future); None
        when its time is unknown."""
        if self.dead_lettered_at is None:
            return None
        return max(0.0, now - self.dead_lettered_at)


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which dead letters an operation takes. Each given criterion must hold
    (AND); within one, any value will do (OR). ``LetterFilter()`` takes every
    letter.

    - ``ids``: the letters' ids (``DeadLetter.id``).
    - ``reasons``: ``DeadLetter.reason``.
    - ``tasks``: the task name in the body; a body that is no envelope has none.
    - ``older_than_s``: dead-lettered at least this many seconds ago.
    - ``newer_than_s``: dead-lettered less than this many seconds ago.

    A letter whose time is unknown (``dead_lettered_at`` None) has no age:
    neither age criterion takes it.

    Raises:
        ConfigurationError: an empty, non-printable or over-long value, over
            ``MAX_VALUES`` values, or an age that is negative or not finite.
    """

    ids: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    tasks: frozenset[str] = frozenset()
    older_than_s: float | None = None
    newer_than_s: float | None = None

    def __init__(
        self,
        *,
        ids: Iterable[str] = (),
        reasons: Iterable[str] = (),
        tasks: Iterable[str] = (),
        older_than_s: float | None = None,
        newer_than_s: float | None = None,
    ) -> None:
        # A str is an iterable of characters: LetterFilter(ids="17") would pick
        # letters "1" and "7". Refuse it rather than act on the wrong letters.
        for name, values in (("ids", ids), ("reasons", reasons), ("tasks", tasks)):
            if isinstance(values, str | bytes):
                raise ConfigurationError(f"LetterFilter {name} takes a collection, not a string")
        object.__setattr__(self, "ids", _values("id", ids))
        object.__setattr__(self, "reasons", _values("reason", reasons))
        object.__setattr__(self, "tasks", _values("task", tasks))
        object.__setattr__(self, "older_than_s", _age("older_than_s", older_than_s))
        object.__setattr__(self, "newer_than_s", _age("newer_than_s", newer_than_s))

    @property
    def everything(self) -> bool:
        """Whether it takes every letter (no criterion given)."""
        return not (
            self.ids
            or self.reasons
            or self.tasks
            or self.older_than_s is not None
            or self.newer_than_s is not None
        )

    def matches(self, letter: DeadLetter, now: float) -> bool:
        """Whether ``letter`` is taken, its age measured at ``now`` (Unix seconds)."""
        if self.ids and letter.id not in self.ids:
            return False
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.older_than_s is not None or self.newer_than_s is not None:
            age_s = letter.age_s(now)
            if age_s is None:
                return False
            if self.older_than_s is not None and age_s < self.older_than_s:
                return False
            if self.newer_than_s is not None and age_s >= self.newer_than_s:
                return False
        # Last: the only criterion that parses the body.
        return not self.tasks or letter.task in self.tasks

    def describe(self) -> str:
        """The criteria in words, for messages: ``reason failed and task emails.send``."""
        parts = [
            f"{what} {' or '.join(sorted(values))}"
            for what, values in (("id", self.ids), ("reason", self.reasons), ("task", self.tasks))
            if values
        ]
        if self.older_than_s is not None:
            parts.append(f"older than {self.older_than_s:g}s")
        if self.newer_than_s is not None:
            parts.append(f"newer than {self.newer_than_s:g}s")
        return " and ".join(parts) or "every letter"


def _values(what: str, values: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(values)
    if len(chosen) > MAX_VALUES:
        raise ConfigurationError(f"at most {MAX_VALUES} {what}s per selection, got {len(chosen)}")
    for value in chosen:
        if (
            not isinstance(value, str)
            or not 0 < len(value) <= MAX_VALUE_CHARS
            or not value.isprintable()
        ):
            raise ConfigurationError(
                f"{what} {value!r:.80} is not 1-{MAX_VALUE_CHARS} printable characters"
            )
    return chosen


def _age(what: str, seconds: float | None) -> float | None:
    if seconds is None:
        return None
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise ConfigurationError(f"{what} must be a finite number of seconds >= 0, got {seconds!r}")
    return float(seconds)


def letter_time(value: object) -> float | None:
    """A letter's time as a broker hands it back: a number, or its text (str or
    bytes), as written by aioack or by anyone else who can write the store.

    One rule for every broker: a finite number of Unix seconds in
    0..``MAX_LETTER_TIME`` is the time; anything else (inf, nan, 1e300, a
    negative number, text that is no number, another type) is unknown: None.
    Unknown is shown as such and taken by no age criterion; never guessed
    (0 would make the letter the oldest, "now" the newest).
    """
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        if len(value) > MAX_TIME_CHARS:
            return None
        try:
            seconds = float(value)
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range
            return None
    else:
        return None
    return seconds if 0.0 <= seconds <= MAX_LETTER_TIME else None  # False for nan


def time_to_store(seconds: float | None) -> float:
    """The time a broker stores a letter with: its own when ``letter_time`` takes
    it, else now (a letter given no usable time is stamped when it is stored)."""
    known = letter_time(seconds)
    return time.time() if known is None else known


def task_of(body: bytes) -> str | None:
    """The ``task`` field of a JSON body, if it is a printable name; else None.

    Lenient on purpose: a letter whose arguments are invalid, or whose task is
    unknown, still names its task. The body is hostile: only a name an
    envelope could carry is returned.
    """
    if len(body) > MAX_PARSED_BODY or not body.startswith(b"{"):
        return None
    try:
        task = json.loads(body).get("task")
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError)
        return None
    if isinstance(task, str) and 0 < len(task) <= MAX_VALUE_CHARS and task.isprintable():
        return task
    return None


def replay_copy(letter: DeadLetter) -> tuple[str, bytes]:
    """The message id and body a replay publishes for ``letter``.

    A body that decodes as an envelope goes back with ``attempt`` = 1, all
    else kept (its id, arguments, ``expires``, headers): a replay is an
    operator's decision that the cause is fixed, so the task gets its whole
    retry budget again, as a first publish would. The broker counts
    deliveries afresh, since the copy is a new message. Its id is kept, so a
    caller waiting on its result, and an idempotency key, still find it.

    A body that does not decode goes back byte for byte, under the letter's
    message id (a new one when it has none): a newer worker may read it; one
    that cannot dead-letters it again.
    """
    try:
        message = decode(letter.body, max_bytes=max(len(letter.body), 1))
    except (MalformedMessage, MessageTooLarge):
        return letter.message_id or uuid.uuid4().hex, letter.body
    fresh = message.model_copy(update={"attempt": 1})
    return message.id, fresh.encode(max_bytes=sys.maxsize)
