"""Property tests: a dead letter's time, however hostile where it was stored, decodes
to a bounded time or to unknown, and every view of the letter still works.

Whoever can write a broker's dead-letter store (an XADD to the dead stream, a
row in the SQLite file, a publish to ``q.dead``) can write any time there.
Each broker's decoder goes through ``letter_time``; ``dlq list`` (table and
JSON) and ``dlq show`` must then print valid output, never raise.

The hostile cases are pinned with ``@example``: CI runs Hypothesis with its
derandomized profile, which may never draw NaN or infinity.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from rich.console import Console

from aioack.brokers.base import DeadLetter
from aioack.brokers.deadletters import MAX_LETTER_TIME, letter_time, time_to_store
from aioack.brokers.rabbitmq.topology import letter_headers, read_letter
from aioack.brokers.redis.letters import letter_fields, letter_from
from aioack.brokers.sqlite import queries, schema
from aioack.cli import dlq_view as view

NOW = 1_750_000_000.0
DL_AT = "x-aioack-dl-dead-lettered-at"

numbers = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.sampled_from([0, -1, 2**32, 2**32 + 1, 2**63 - 1, 2**1100])
)
texts = st.text(max_size=50) | numbers.map(repr) | numbers.map(str)
wire_values = numbers | texts | texts.map(str.encode) | st.binary(max_size=30) | st.none()
#: What a hostile writer stores, pinned: CI's derandomized profile may not draw them.
HOSTILE = [
    math.inf,
    -math.inf,
    math.nan,
    1e300,
    -1e300,
    -1.0,
    MAX_LETTER_TIME + 1,
    2**1100,
    "inf",
    "-Infinity",
    "nan",
    "1e300",
    "1e309",
    b"inf",
    b"nan",
    b"-1e300",
    b"\xff",
    "9" * 400,
    True,
]


def _bounded(seconds: float | None) -> bool:
    return seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_LETTER_TIME)


def _views_work(letter: DeadLetter) -> None:
    """Every view of ``letter`` prints, and its JSON is JSON (no NaN, no Infinity)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON")

    for full in (False, True):
        shown = json.loads(
            view.dumps(view.letter_json(letter, NOW, full=full)), parse_constant=refuse
        )
        assert _bounded(shown["dead_lettered_at"])
        assert (shown["age_s"] is None) == (shown["dead_lettered_at"] is None)
    text = view.describe(letter, NOW)
    assert ("dead-lettered: unknown" in text) == (letter_time(letter.dead_lettered_at) is None)
    Console(width=160, file=io.StringIO()).print(view.letters_table([letter], NOW, with_queue=True))


def _pinned(*cases: Any, rest: tuple[Any, ...] = ()) -> Any:
    """``@example(case, *rest)`` for each case."""

    def pin(test: Any) -> Any:
        for case in cases:
            test = example(case, *rest)(test)
        return test

    return pin


@given(wire_values)
@settings(max_examples=500)
@_pinned(*HOSTILE)
def test_letter_time_takes_a_finite_time_in_range_and_nothing_else(value: object) -> None:
    seconds = letter_time(value)
    assert _bounded(seconds)
    stored = time_to_store(value if isinstance(value, float) else None)
    assert _bounded(stored) and stored is not None


@given(wire_values)
@settings(max_examples=300)
@_pinned(*HOSTILE, None)
def test_any_redis_at_field_decodes_to_a_bounded_time_and_every_view_works(at: object) -> None:
    flat = letter_fields(DeadLetter(queue="q", reason="failed", body=b"{}"))
    fields = dict(zip(flat[0::2], flat[1::2], strict=True))
    fields.pop("at")
    if at is not None:
        fields["at"] = at if isinstance(at, bytes) else str(at).encode("utf-8", "replace")
    raw = [part.encode() if isinstance(part, str) else part for kv in fields.items() for part in kv]
    letter = letter_from("q", raw, b"1-0")
    assert _bounded(letter.dead_lettered_at)
    _views_work(letter)


@given(wire_values, st.booleans())
@settings(max_examples=300)
@_pinned(*HOSTILE, rest=(False,))
def test_any_amqp_time_header_decodes_to_a_bounded_time_and_every_view_works(
    at: object, as_text: bool
) -> None:
    headers: dict[str, Any] = letter_headers(DeadLetter(queue="q", reason="failed", body=b"x"))
    headers[DL_AT] = str(at) if as_text else at
    letter = read_letter("q", b"x", headers, "m", delivery_limit=20)
    assert _bounded(letter.dead_lettered_at)
    _views_work(letter)


zones = st.sampled_from([None, UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))])


@given(st.datetimes(timezones=zones) | wire_values)
@settings(max_examples=300)
@_pinned(datetime.min, datetime.max, datetime(1969, 12, 31, 23, 59), datetime(2200, 1, 1), *HOSTILE)
def test_any_x_death_time_decodes_to_a_bounded_time_and_every_view_works(stamp: object) -> None:
    # RabbitMQ dead-lettered it itself (or someone forged x-death).
    headers = {"x-death": [{"reason": "delivery_limit", "queue": "q", "time": stamp, "count": 1}]}
    letter = read_letter("q", b"x", headers, "m", delivery_limit=20)
    assert _bounded(letter.dead_lettered_at)
    _views_work(letter)


sqlite_values = (
    st.floats(allow_nan=False, allow_infinity=True)  # NaN is stored as NULL: refused
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=30)
    | st.binary(max_size=30)
)


@given(sqlite_values)
@settings(max_examples=300)
@_pinned(math.inf, -math.inf, 1e300, -1.0, 2**63 - 1, "inf", "soon", b"\x00\xff", "1e300")
def test_any_sqlite_time_column_decodes_to_a_bounded_time_and_every_view_works(
    at: object,
) -> None:
    # Any process with the file open can write the row: its column is wire input.
    conn = sqlite3.connect(":memory:")
    try:
        schema._create(conn)
        conn.execute(
            "INSERT INTO dead_letters (queue, message_id, body, reason, detail, delivery_count, "
            "dead_lettered_at) VALUES ('q', 'm', x'7b7d', 'failed', '', 1, ?)",
            (at,),
        )
        [letter] = queries.letters(conn, "q", after=0, until=10, limit=10)
    finally:
        conn.close()
    assert _bounded(letter.dead_lettered_at)
    _views_work(letter)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.none())
@example(math.nan)
@example(math.inf)
@example(-1e300)
def test_the_views_hold_for_a_letter_made_in_process_with_any_time(at: float | None) -> None:
    # A DeadLetter built in code (a hook, a test) is not checked: the views are.
    _views_work(DeadLetter(queue="q", reason="failed", body=b"{}", dead_lettered_at=at))
    assert view.age(at) == view.UNKNOWN or (at is not None and math.isfinite(at))
