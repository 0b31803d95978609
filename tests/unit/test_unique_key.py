"""Unique enqueue's key: the same call is one key, another call or task is another."""

from __future__ import annotations

import pytest

from aioack import App
from aioack._unique import MAX_UNIQUE_FOR_S, stored_key, unique_window_s
from aioack.brokers import MemoryBroker
from aioack.results import MemoryResultBackend


def test_the_default_key_is_the_call_and_an_explicit_one_is_scoped_by_task() -> None:
    same = stored_key("t", None, ["a", 1], {"x": {"b": 2, "a": 1}})
    assert same == stored_key("t", None, ["a", 1], {"x": {"a": 1, "b": 2}}), "key order matters"
    assert same != stored_key("t", None, ["a", 2], {"x": {"a": 1, "b": 2}})
    assert same != stored_key("other", None, ["a", 1], {"x": {"a": 1, "b": 2}})
    assert stored_key("t", "k", [], {}) == "t:k" != stored_key("other", "k", [], {})


def test_the_window_is_checked() -> None:
    assert unique_window_s(None, None) is None
    assert unique_window_s(2, None) == 2.0
    assert unique_window_s(MAX_UNIQUE_FOR_S, "k") == MAX_UNIQUE_FOR_S
    for bad in (True, "60"):
        with pytest.raises(ValueError, match="number of seconds"):
            unique_window_s(bad, None)  # type: ignore[arg-type]


async def test_positional_and_keyword_spellings_of_one_call_share_a_key() -> None:
    app = App(broker=MemoryBroker(), results=MemoryResultBackend())

    @app.task(queue="q")
    async def report(account: str, full: bool = False) -> str:
        return account

    first = await report.apply_async(("a",), unique_for=60)
    assert (await report.apply_async((), {"account": "a"}, unique_for=60)).id == first.id
    # A default passed explicitly is sent, so it is another call.
    assert (await report.apply_async(("a",), {"full": False}, unique_for=60)).id != first.id
    assert (await app.broker.stats("q")).ready == 2
