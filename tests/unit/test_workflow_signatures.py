"""Workflow signatures are checked at the call site, as ``delay()`` is: nothing is published."""

from __future__ import annotations

import pytest

from aioack import App, ConfigurationError, InvalidArguments, MemoryBroker, chain, chord, group
from aioack.results import MemoryResultBackend


def _app() -> tuple[App, MemoryBroker]:
    broker = MemoryBroker()
    return App(broker=broker, results=MemoryResultBackend()), broker


app, broker = _app()


@app.task(queue="wf")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="wf")
async def total(values: list[int], scale: int = 1) -> int:
    return sum(values) * scale


def test_too_many_arguments_fail_at_s() -> None:
    with pytest.raises(InvalidArguments, match="too many positional"):
        add.s(1, 2, 3)
    with pytest.raises(InvalidArguments, match="unexpected keyword"):
        add.s(z=1)


def test_an_immutable_signature_is_checked_in_full_at_si() -> None:
    with pytest.raises(InvalidArguments, match="missing a required argument"):
        add.si(1)
    with pytest.raises(InvalidArguments, match="'y'"):
        add.si(1, "2")  # strict: a str is no int


def test_the_first_step_gets_no_result_the_others_one() -> None:
    with pytest.raises(InvalidArguments, match="missing a required argument"):
        chain(add.s(1), add.s(2))  # the first step has nothing before it
    with pytest.raises(InvalidArguments, match="too many positional"):
        chain(add.s(1, 2), add.s(1, 2))  # a result comes first: no room for two more
    with pytest.raises(InvalidArguments, match="'y'"):
        chain(add.s(1, 2), add.s("ten"))
    with pytest.raises(InvalidArguments, match="multiple values"):
        chain(add.s(1, 2), add.s(x=1))  # x is where the previous result goes
    chain(add.s(1, 2), add.s(10), add.si(1, 1))  # fits


def test_group_members_and_a_chord_callback_are_checked() -> None:
    with pytest.raises(InvalidArguments):
        group(add.s(i) for i in range(3))
    with pytest.raises(InvalidArguments, match="'scale'"):
        chord([add.s(1, 2)], total.s(scale="x"))
    with pytest.raises(TypeError, match="signature"):
        chain(add.s(1, 2), "not a signature")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        chain()
    with pytest.raises(ValueError, match="at most 100"):
        chain(*[add.s(1, 2)] + [add.s(1)] * 100)


async def test_bad_input_publishes_nothing() -> None:
    for bad in (lambda: chain(add.s(1, 2), add.s("x")), lambda: group([add.s(1)])):
        with pytest.raises(InvalidArguments):
            bad()
    with pytest.raises(ValueError, match="workflow"):
        await chain(add.s(1, 2)).apply_async(workflow_id="bad\nid")
    await broker.connect()  # idempotent: connected already if anything was published
    await broker.declare(["wf"])
    assert (await broker.stats("wf")).ready == 0


async def test_a_workflow_needs_a_result_backend() -> None:
    plain = App(broker=MemoryBroker())

    @plain.task
    async def one(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="result backend"):
        await chain(one.s(1), one.s()).apply_async()
