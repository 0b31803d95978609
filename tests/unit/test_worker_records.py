"""Worker records are read back from the broker, where anyone can write: whatever
is there, ``inspect`` gets a bounded record or none, and prints no control
character (a terminal escape in a host name must not reach the screen)."""

from __future__ import annotations

import json
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from aioack.brokers import WorkerRecord
from aioack.cli.inspect import render

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5), max_leaves=20)
TEXT = st.text(max_size=300)
NUMBER = st.one_of(st.integers(), st.floats(), st.text(max_size=8))
#: Records shaped like real ones, with hostile values; now and then a field of
#: any kind, or missing.
RECORDS = st.fixed_dictionaries(
    {
        "worker_id": st.one_of(TEXT, VALUES),
        "host": TEXT,
        "pid": st.integers() | NUMBER,
        "queues": st.one_of(st.lists(TEXT, max_size=150), VALUES),
        "concurrency": st.integers(),
        "in_flight": st.integers(),
        "started_at": st.floats() | NUMBER,
        "seen_at": st.floats(),
    }
)
CONTROL = {chr(c) for c in (*range(32), 127)} - {"\n"}


def _report(record: WorkerRecord) -> dict[str, object]:
    return {
        "broker": "memory://",
        "at": 1_000_000.0,
        "queues": {"q": {"ready": 0, "delayed": 0, "unacked": 0, "dead": 0}},
        "limits": {},
        "workers": [record.to_json()],
        "unavailable": [],
    }


GOOD = {
    "worker_id": "w1",
    "host": "h",
    "pid": 1,
    "queues": ["q"],
    "concurrency": 1,
    "in_flight": 0,
    "started_at": 1.0,
    "seen_at": 1.0,
}


@settings(max_examples=300)
@given(RECORDS)
@example({**GOOD, "started_at": math.nan})  # JSON's NaN, which json.loads reads
@example({**GOOD, "seen_at": math.inf})
@example({**GOOD, "host": "\x1b]0;owned\x07", "queues": ["\x1b[2J"]})
def test_any_record_from_the_wire_is_refused_or_bounded_and_shown_safely(data: dict) -> None:  # type: ignore[type-arg]
    record = WorkerRecord.from_json(data)
    if record is None:
        return
    assert len(record.worker_id) <= 64 and len(record.host) <= 255
    assert len(record.queues) <= 100 and all(len(q) <= 200 for q in record.queues)
    assert math.isfinite(record.started_at) and math.isfinite(record.seen_at)
    json.loads(json.dumps(record.to_json(), allow_nan=False))  # --json stays valid JSON
    shown = render(_report(record))
    assert not CONTROL & set(shown), repr(shown)


def test_a_terminal_escape_in_a_host_is_shown_escaped() -> None:
    record = WorkerRecord.from_json({**GOOD, "host": "\x1b[2Jevil"})
    assert record is not None
    shown = render(_report(record))
    assert "\\x1b[2Jevil" in shown and "\x1b" not in shown
