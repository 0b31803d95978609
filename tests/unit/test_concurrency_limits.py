"""Per-key concurrency limits without a network: options refused at decoration time,
the key a run gets, the waits handed out, a worker refusing to start without slots, and
a run that lost its slot being cancelled and run again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from aioack import App, ConfigurationError, TaskContext
from aioack.brokers import MemoryBroker
from aioack.results import MemoryResultBackend
from aioack.testing import run_until_idle
from aioack.worker.concurrency import MAX_KEY_CHARS, InvalidKey, key_of
from aioack.worker.slotwaits import MAX_SLOT_DELAY_S, MIN_SLOT_DELAY_S, SlotWaits
from tests.support import unique, wait_until


def _app() -> App:
    return App(broker=MemoryBroker(), results=MemoryResultBackend())


# -- decoration time ----------------------------------------------------------


def test_a_concurrency_key_naming_no_parameter_fails_at_decoration_and_lists_them() -> None:
    with pytest.raises(ConfigurationError, match=r"concurrency_key='usr'.*user_id, force"):

        @_app().task(limit_concurrency=1, concurrency_key="usr")
        async def sync(user_id: str, force: bool = False) -> None: ...


def test_the_task_context_parameter_is_not_a_concurrency_key() -> None:
    with pytest.raises(ConfigurationError, match="names no parameter"):

        @_app().task(limit_concurrency=1, concurrency_key="ctx")
        async def sync(ctx: TaskContext, user_id: str) -> None: ...


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_fails_at_decoration(limit: int) -> None:
    with pytest.raises(ConfigurationError, match="limit_concurrency"):

        @_app().task(limit_concurrency=limit)
        async def sync(user_id: str) -> None: ...


def test_a_key_without_a_limit_fails_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="add limit_concurrency"):

        @_app().task(concurrency_key="user_id")
        async def sync(user_id: str) -> None: ...


def test_a_key_may_be_a_parameter_name_or_a_callable() -> None:
    app = _app()

    @app.task(limit_concurrency=1, concurrency_key="user_id")
    async def by_name(user_id: str) -> None: ...

    @app.task(limit_concurrency=3, concurrency_key=lambda a: a["org"])
    async def by_callable(org: int, user_id: str) -> None: ...

    assert by_name.options.concurrency_key == "user_id"
    assert by_callable.options.limit_concurrency == 3


# -- the key of a run ---------------------------------------------------------


def _job(task: Any, *args: Any, **kwargs: Any) -> Any:
    return SimpleNamespace(task=task, args=args, kwargs=kwargs)


def test_the_stored_key_is_the_task_name_and_the_value_as_text() -> None:
    app = _app()

    @app.task(name="sync", limit_concurrency=1, concurrency_key="user")
    async def sync(user: Any, n: int = 0) -> None: ...

    @app.task(name="global", limit_concurrency=1)
    async def everything(n: int) -> None: ...

    assert key_of(_job(sync, user="u1")) == "sync:u1"
    assert key_of(_job(sync, 7)) == "sync:7"  # positional, bound by name
    # Not a str or an int: canonical JSON, so equal values give one key in every process.
    assert key_of(_job(sync, user={"b": 1, "a": [2]})) == key_of(
        _job(sync, user={"a": [2], "b": 1})
    )
    assert key_of(_job(everything, n=1)) == "global"
    long_key = key_of(_job(sync, user="x" * 10_000))
    assert long_key.startswith("sync:sha256:") and len(long_key) < MAX_KEY_CHARS


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (lambda a: 1 / 0, "raised ZeroDivisionError"),
        (lambda a: None, "returned NoneType"),
        (lambda a: True, "returned bool"),
        (lambda a: asyncio.sleep(0), "plain function"),
    ],
)
def test_a_key_callable_that_raises_or_returns_junk_is_an_invalid_key(key: Any, error: str) -> None:
    @_app().task(limit_concurrency=1, concurrency_key=key)
    async def sync(user: str) -> None: ...

    with pytest.raises(InvalidKey, match=error):
        key_of(_job(sync, user="u"))


# -- waits ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_waiters_of_one_key_get_successive_turns_about_one_run_apart() -> None:
    clock = Clock()
    waits = SlotWaits(clock, rand=lambda: 0.0)
    waits.ran("t", 0.5)
    assert [waits.delay_s("t", "k", 1, f"m{i}") for i in range(3)] == [0.5, 1.0, 1.5]
    assert waits.delay_s("t", "other", 1, "m9") == 0.5  # keys have their own turns
    assert waits.delay_s("t", "k2", 2, "m10") == 0.25  # two slots: turns twice as often


def test_a_waiter_back_too_early_spreads_the_turns_and_one_admitted_narrows_them() -> None:
    clock = Clock()
    waits = SlotWaits(clock, rand=lambda: 0.0)
    waits.ran("t", 1.0)
    assert waits.delay_s("t", "k", 1, "m1") == 1.0
    clock.now += 1.0
    assert waits.delay_s("t", "k", 1, "m1") == 1.25  # still full when it came back
    clock.now += 10.0
    waits.admitted("k", "m1")
    assert waits.delay_s("t", "k", 1, "m2") == pytest.approx(1.125)


def test_waits_are_bounded() -> None:
    clock = Clock()
    waits = SlotWaits(clock, rand=lambda: 1.0)
    waits.ran("fast", 0.0001)
    assert waits.delay_s("fast", "k", 1, "m") == MIN_SLOT_DELAY_S
    waits.ran("slow", 3600.0)
    assert waits.delay_s("slow", "k2", 1, "m2") == MAX_SLOT_DELAY_S


# -- the worker -------------------------------------------------------------------


async def test_a_worker_without_a_result_backend_refuses_to_start() -> None:
    app = App(broker=MemoryBroker())

    @app.task(queue="q", limit_concurrency=1, concurrency_key="user")
    async def sync(user: str) -> None: ...

    with pytest.raises(ConfigurationError, match=r"limit_concurrency.*App\(results="):
        await app.worker(["q"]).run(burst=True)


async def test_a_run_whose_slot_lapsed_and_was_taken_is_cancelled_and_runs_again() -> None:
    backend = MemoryResultBackend()
    app = App(broker=MemoryBroker(), results=backend, idempotency_lease=0.3)
    queue, started, cancelled = unique("q"), asyncio.Event(), []
    runs = 0

    @app.task(queue=queue, limit_concurrency=1, concurrency_key="user", track_started=False)
    async def sync(user: str) -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(user)
                raise
        return user

    result = await sync.delay("u1")
    worker = asyncio.create_task(run_until_idle(app, [queue]))
    await asyncio.wait_for(started.wait(), 5)
    # The lease lapses (a stalled backend, say) and another run takes the slot.
    backend._slots.clear()
    assert await backend.acquire_slot(f"{sync.name}:u1", 1, "intruder", 30)
    await wait_until(lambda: cancelled == ["u1"], timeout=5, message="the run to be cancelled")
    await backend.release_slot(f"{sync.name}:u1", "intruder")
    assert await result.get(timeout=10) == "u1"
    assert await asyncio.wait_for(worker, 10) == []
    assert runs == 2
