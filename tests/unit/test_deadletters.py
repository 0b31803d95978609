"""Which dead letters a selection takes, and what a replay publishes: pure, no broker."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioack.brokers import DeadLetter, LetterFilter
from aioack.brokers.deadletters import MAX_VALUES, replay_copy, task_of
from aioack.errors import ConfigurationError
from aioack.message import Message, decode

NOW = 1_000_000.0


def _letter(
    *, id: str = "1", reason: str = "failed", task: str | None = "mail.send", age_s: float = 10.0
) -> DeadLetter:
    body = Message(id="m", task=task).encode() if task else b"\xffnot json"
    return DeadLetter(queue="q", reason=reason, body=body, id=id, dead_lettered_at=NOW - age_s)


def test_an_empty_filter_takes_every_letter_and_says_so() -> None:
    every = LetterFilter()
    assert every.everything and every.describe() == "every letter"
    assert every.matches(_letter(task=None, reason="malformed"), NOW)


@pytest.mark.parametrize(
    ("where", "taken"),
    [
        (LetterFilter(ids=["1", "3"]), {"1", "3"}),
        (LetterFilter(reasons=["malformed"]), {"4"}),
        (LetterFilter(tasks=["mail.send"]), {"1", "2"}),
        (LetterFilter(tasks=["mail.send"], reasons=["timeout"]), {"2"}),
        (LetterFilter(older_than_s=3600), {"3"}),
        (LetterFilter(newer_than_s=3600), {"1", "2", "4"}),
        (LetterFilter(older_than_s=5, newer_than_s=3600), {"1", "2"}),
        (LetterFilter(tasks=["nope"]), set()),
    ],
)
def test_each_criterion_must_hold_and_any_value_of_one_will_do(
    where: LetterFilter, taken: set[str]
) -> None:
    letters = [
        _letter(id="1"),
        _letter(id="2", reason="timeout"),
        _letter(id="3", task="report.build", age_s=7200),
        _letter(id="4", reason="malformed", task=None, age_s=0),
    ]
    assert {letter.id for letter in letters if where.matches(letter, NOW)} == taken


def test_age_bounds_are_older_inclusive_and_newer_exclusive() -> None:
    letter = _letter(age_s=60)
    assert LetterFilter(older_than_s=60).matches(letter, NOW)
    assert not LetterFilter(newer_than_s=60).matches(letter, NOW)
    # A stamp in the future (another machine's clock) is age 0, not negative.
    assert _letter(age_s=-30).age_s(NOW) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"ids": [""]},
        {"tasks": ["x" * 201]},
        {"reasons": ["fail\ned"]},
        {"ids": "17"},  # a string is not a collection of ids
        {"ids": [str(i) for i in range(MAX_VALUES + 1)]},
        {"older_than_s": -1},
        {"newer_than_s": math.inf},
        {"older_than_s": math.nan},
    ],
)
def test_bad_selections_are_refused_with_what_is_wrong(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        LetterFilter(**bad)  # type: ignore[arg-type]


def test_describe_names_every_criterion() -> None:
    where = LetterFilter(reasons=["failed", "timeout"], tasks=["a"], older_than_s=60)
    assert where.describe() == "reason failed or timeout and task a and older than 60s"


def test_task_of_reads_the_task_even_when_the_envelope_is_invalid() -> None:
    assert task_of(b'{"task": "mail.send", "args": "not a list"}') == "mail.send"
    assert task_of(b'{"task": "bad\\nname"}') is None  # a name that could forge a log line
    assert task_of(b'{"task": 3}') is None
    assert task_of(b"[1, 2]") is None
    assert task_of(b"\xff\xfe") is None
    assert task_of(b"{" * 100_000) is None  # nesting past the parser's depth


@given(st.binary(max_size=300))
def test_task_of_never_raises_on_any_body(body: bytes) -> None:
    task = task_of(body)
    assert task is None or (task.isprintable() and 0 < len(task) <= 200)


def test_replay_copy_starts_the_attempts_again_and_keeps_everything_else() -> None:
    sent = Message(
        id="m1",
        task="mail.send",
        args=[1],
        kwargs={"to": "a@b"},
        attempt=4,
        expires=NOW + 60,
        headers={"traceparent": "00-abc-def-01"},
    )
    letter = DeadLetter(queue="q", reason="max_retries", body=sent.encode(), attempt=4)
    message_id, body = replay_copy(letter)
    again = decode(body)
    assert (message_id, again.attempt) == ("m1", 1)
    assert again.model_dump(exclude={"attempt"}) == sent.model_dump(exclude={"attempt"})


def test_replay_copy_of_a_body_that_is_no_envelope_is_byte_for_byte() -> None:
    junk = DeadLetter(queue="q", reason="malformed", body=b"\xff\x00junk", message_id="j1")
    assert replay_copy(junk) == ("j1", b"\xff\x00junk")
    nameless = DeadLetter(queue="q", reason="malformed", body=b"{}")
    message_id, body = replay_copy(nameless)
    assert body == b"{}" and len(message_id) == 32  # a fresh id: every message has one


def test_replay_copy_of_an_oversized_body_keeps_it_whole() -> None:
    big = Message(id="big", task="t", args=["x" * 2_000_000], attempt=2)
    letter = DeadLetter(queue="q", reason="too_large", body=big.encode(max_bytes=10**8))
    _, body = replay_copy(letter)
    copy = decode(body, max_bytes=10**8)
    assert copy.args == big.args and copy.attempt == 1
