"""Strict arguments: what a caller passes is what the task gets, or the call fails.

The round trip is the real one: ``to_wire`` at the call site, the message
encoded and decoded as the broker carries it, ``from_wire`` in the worker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from aioack import App, InvalidArguments
from aioack.brokers import MemoryBroker
from aioack.message import Message, decode
from aioack.signature import TaskSignature, same_value


class _Context:
    """Stands for TaskContext: these signatures have none."""


def _arrives(sig: TaskSignature, *args: Any) -> tuple[Any, ...]:
    """What the task function receives for a call with ``args``, through a real message."""
    wire_args, wire_kwargs = sig.to_wire(args, {})
    body = Message(id="t-1", task="t", args=wire_args, kwargs=wire_kwargs).encode()
    message = decode(body)
    call_args, call_kwargs = sig.from_wire(message.args, message.kwargs, None)
    names = list(sig.public.parameters)
    return call_args if call_args else tuple(call_kwargs[n] for n in names)


def _signature(annotation: Any, *, strict: bool = True) -> TaskSignature:
    def fn(value: annotation) -> None: ...  # type: ignore[valid-type]

    fn.__annotations__ = {"value": annotation, "return": None}
    return TaskSignature(fn, _Context, strict=strict)


class Colour(enum.IntEnum):
    RED = 1


# -- the cases, one by one -------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "value", "fragment"),
    [
        (int, "2", "argument 'value': Input should be a valid integer"),
        (int, True, "argument 'value': Input should be a valid integer"),
        (str, b"x", "argument 'value': Input should be a valid string"),
        (bytes, b"\xff", "argument 'value' cannot be sent as JSON: bytes that are not UTF-8"),
        (str, "\ud800", "argument 'value' cannot be sent as JSON"),
        (Any, {1, 2}, "set {1, 2} would not arrive unchanged.*list \\[1, 2\\]"),
        (Any, dt.datetime(2026, 1, 2), "datetime .* would not arrive unchanged.*str"),
        (Any, decimal.Decimal("1.10"), "Decimal .* would not arrive unchanged"),
        (Any, uuid.UUID(int=7), "UUID .* would not arrive unchanged"),
        (Any, {1: "a"}, "dict \\{1: 'a'\\} would not arrive unchanged.*\\{'1': 'a'\\}"),
        (Any, float("nan"), "float nan would not arrive unchanged.*None\\): JSON has no NaN"),
        (float, float("inf"), "float inf would not arrive unchanged"),
        (Any, [1, {"k": (1, 2)}], "would not arrive unchanged"),
        (Any, Colour.RED, "Colour.RED.*would not arrive unchanged.*int 1"),
        (object, b"\xff", "cannot be sent as JSON: bytes that are not UTF-8"),
    ],
)
def test_a_value_that_would_change_fails_at_the_call_site_naming_its_parameter(
    annotation: Any, value: Any, fragment: str
) -> None:
    with pytest.raises(InvalidArguments, match=fragment):
        _signature(annotation).to_wire((value,), {})


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (set[int], {1, 2}),
        (frozenset[str], frozenset({"a"})),
        (tuple[int, ...], (1, 2)),
        (dict[int, str], {1: "a"}),
        (dt.datetime, dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)),
        (dt.date, dt.date(2026, 1, 2)),
        (decimal.Decimal, decimal.Decimal("1.10")),
        (uuid.UUID, uuid.UUID(int=7)),
        (bytes, b"utf-8 text \xc3\xa9"),
        (Colour, Colour.RED),
    ],
)
def test_a_typed_parameter_gets_back_exactly_what_was_passed(annotation: Any, value: Any) -> None:
    (arrived,) = _arrives(_signature(annotation), value)
    assert same_value(arrived, value), (arrived, value)


def test_lax_arguments_convert_as_pydantic_lax_mode_does_but_never_silently_change() -> None:
    lax = _signature(int, strict=False)
    assert _arrives(lax, "2") == (2,)
    with pytest.raises(InvalidArguments, match="would not arrive unchanged"):
        _signature(Any, strict=False).to_wire(({1},), {})


def test_the_worker_refuses_a_lax_wire_value_for_a_strict_task() -> None:
    # A hand-made (or foreign) message: "2" for an int is refused in the worker too.
    with pytest.raises(InvalidArguments, match="argument 'value'"):
        _signature(int).from_wire(["2"], {}, None)
    assert _signature(int, strict=False).from_wire(["2"], {}, None)[1] == {"value": 2}


def test_the_worker_takes_the_json_forms_a_strict_producer_sends() -> None:
    sig = _signature(dict[str, dt.datetime])
    _, values = sig.from_wire([{"at": "2026-01-02T03:04:05Z"}], {}, None)
    assert values["value"]["at"] == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


async def test_delay_refuses_a_string_for_an_int_and_publishes_nothing() -> None:
    broker = MemoryBroker()
    app = App(broker=broker)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(InvalidArguments, match="add: argument 'y'"):
        await add.delay(2, "2")  # type: ignore[arg-type]
    await broker.connect()
    assert (await broker.stats("default")).pending == 0


def test_strict_arguments_is_a_task_option() -> None:
    app = App(broker=MemoryBroker())

    @app.task(strict_arguments=False)
    async def lax(x: int) -> int:
        return x

    assert lax.options.strict_arguments is False and lax.signature.strict is False


# -- the round trip, by property ------------------------------------------------

_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text() | st.floats()
_HOSTILE = (
    st.binary(max_size=8)
    | st.sets(st.integers(), max_size=3)
    | st.frozensets(st.text(max_size=3), max_size=3)
    | st.tuples(st.integers())
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.decimals(allow_nan=False, places=3)
    | st.uuids()
    | st.dictionaries(st.integers(), st.text(max_size=3), max_size=3)
    | st.sampled_from([float("nan"), float("inf"), -0.0, Colour.RED, "\ud800", b"\xff"])
)
_ANYTHING = st.recursive(
    _JSON_SCALARS | _HOSTILE,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)

ANNOTATIONS: list[Any] = [
    int,
    float,
    str,
    bytes,
    bool,
    Any,
    object,
    set[int],
    frozenset[str],
    tuple[int, ...],
    dict[int, str],
    list[float],
    dt.datetime,
    dt.date,
    decimal.Decimal,
    uuid.UUID,
    int | None,
    Colour,
]


def _value_for(annotation: Any) -> st.SearchStrategy[Any]:
    if annotation in (Any, object):
        return _ANYTHING
    return st.from_type(annotation) | _ANYTHING


@st.composite
def _calls(draw: st.DrawFn) -> tuple[Any, bool, Any]:
    annotation = draw(st.sampled_from(ANNOTATIONS))
    return annotation, draw(st.booleans()), draw(_value_for(annotation))


@settings(max_examples=600, deadline=None)
@given(_calls())
@example((Any, True, {1, 2}))
@example((Any, True, {1: "a"}))
@example((Any, True, float("nan")))
@example((Any, True, [dt.datetime(2026, 1, 2)]))
@example((Any, True, (1, 2)))
@example((Any, False, Colour.RED))
@example((float, True, float("inf")))
@example((bytes, True, b"\xff"))
@example((str, True, "\ud800"))
@example((int, True, True))
@example((int, False, "2"))
@example((dict[int, str], True, {1: "a"}))
@example((decimal.Decimal, True, decimal.Decimal("NaN")))
@example((dt.datetime, True, dt.datetime(2026, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=5)))))
def test_what_goes_in_comes_out_equal_or_the_call_fails(call: tuple[Any, bool, Any]) -> None:
    annotation, strict, value = call
    sig = _signature(annotation, strict=strict)
    try:
        (arrived,) = _arrives(sig, value)
    except InvalidArguments:
        return  # refused at the call site: allowed
    # What the call site took the value for (strict mode keeps its type;
    # lax mode may convert, as pydantic's lax mode does), then arrives as such.
    taken = TypeAdapter(annotation).validate_python(value, strict=strict)
    assert same_value(arrived, taken), (value, taken, arrived)
    if strict and not isinstance(taken, float):
        assert same_value(taken, value) or taken == value, (value, taken)
    if isinstance(arrived, float):
        assert math.isfinite(arrived)


class _Level(enum.IntEnum):
    HIGH = 1


class _Holder(BaseModel):
    value: Any


@dataclasses.dataclass
class _Box:
    value: Any


@pytest.mark.parametrize(
    "value", [_Holder(value=_Level.HIGH), _Box(_Level.HIGH), _Holder(value=(1, 2))]
)
def test_a_model_or_dataclass_whose_any_field_would_change_fails_at_the_call_site(
    value: Any,
) -> None:
    # == on the model would pass: _Level.HIGH == 1 and (1, 2) == ... after JSON.
    def task(holder: Any) -> None: ...

    with pytest.raises(InvalidArguments, match="would not arrive unchanged"):
        TaskSignature(task, object).to_wire((value,), {})
