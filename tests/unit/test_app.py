"""Producer side: registration, call-site validation, publishing."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from aioack import App, ConfigurationError, InvalidArguments, MessageTooLarge, TaskContext
from aioack.brokers import MemoryBroker
from aioack.brokers.sqlite import SQLiteBroker
from aioack.message import Message


class Order(BaseModel):
    sku: str
    quantity: int


def make_app() -> tuple[App, MemoryBroker]:
    broker = MemoryBroker()
    return App(broker=broker), broker


async def _published(broker: MemoryBroker, queue: str) -> Message:
    consumer = await broker.consume([queue], prefetch=10)
    delivery = await consumer.get(1.0)
    assert delivery is not None
    await consumer.close()
    return Message.model_validate_json(delivery.body)


async def test_delay_validates_and_sends_arguments_as_json() -> None:
    app, broker = make_app()

    @app.task(queue="orders")
    async def place(order: Order, when: dt.datetime, *, note: str = "") -> None: ...

    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    result = await place.delay(Order(sku="a", quantity=2), moment, note="x")
    message = await _published(broker, "orders")
    assert message.id == result.id and message.task == place.name
    assert message.args == [{"sku": "a", "quantity": 2}, "2026-01-02T03:04:05Z"]
    assert message.kwargs == {"note": "x"}


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((), {}, "missing a required argument"),
        ((1, 2, 3), {}, "too many positional"),
        (("abc",), {}, "valid integer"),
        ((1,), {"nope": 1}, "unexpected keyword"),
    ],
)
async def test_wrong_arguments_fail_at_the_call_site(
    args: tuple[Any, ...], kwargs: dict[str, Any], fragment: str
) -> None:
    app, broker = make_app()

    @app.task
    async def needs_int(n: int) -> None: ...

    with pytest.raises(InvalidArguments, match=fragment):
        await needs_int.apply_async(args, kwargs)
    await broker.connect()
    assert (await broker.stats("default")).pending == 0, "nothing was published"


async def test_unserializable_argument_fails_at_the_call_site() -> None:
    app, _ = make_app()

    @app.task
    async def anything(value) -> None:  # type: ignore[no-untyped-def]
        ...

    with pytest.raises(InvalidArguments, match="JSON"):
        await anything.delay(object())


async def test_task_context_parameter_is_not_an_argument() -> None:
    app, broker = make_app()

    @app.task
    async def with_ctx(ctx: TaskContext, n: int) -> None: ...

    await with_ctx.delay(3)
    assert (await _published(broker, "default")).args == [3]


async def test_oversized_message_fails_at_the_call_site() -> None:
    app = App(broker=MemoryBroker(), max_message_bytes=1000)

    @app.task
    async def big(blob: str) -> None: ...

    with pytest.raises(MessageTooLarge, match="over the limit"):
        await big.delay("x" * 2000)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"acks_lat": True}, "acks_lat"),
        ({"max_retries": -1}, "max_retries"),
        ({"time_limit": 0}, "time_limit"),
        ({"queue": "bad queue!"}, "queue name"),
        ({"autoretry_for": ("ValueError",)}, "autoretry_for"),
        ({"reject_on_worker_lost": False, "acks_on_failure_or_timeout": False}, "worker_lost"),
    ],
)
def test_bad_task_options_fail_at_decoration(options: dict[str, Any], fragment: str) -> None:
    app, _ = make_app()
    with pytest.raises(ConfigurationError, match=fragment):

        @app.task(**options)
        async def t() -> None: ...


def test_duplicate_task_names_are_refused() -> None:
    app, _ = make_app()

    @app.task(name="same")
    async def a() -> None: ...

    with pytest.raises(ConfigurationError, match="registered twice"):

        @app.task(name="same")
        async def b() -> None: ...


async def test_apply_async_options_are_checked() -> None:
    app, _ = make_app()

    @app.task
    async def t() -> None: ...

    now = dt.datetime.now(dt.UTC)
    with pytest.raises(ValueError, match="not both"):
        await t.apply_async(countdown=1, eta=now)
    with pytest.raises(ValueError, match="timezone-aware"):
        await t.apply_async(eta=dt.datetime.now())
    with pytest.raises(ValueError, match=">= 0"):
        await t.apply_async(countdown=-1)
    with pytest.raises(ValueError, match="queue name"):
        await t.apply_async(queue="no spaces")


async def test_countdown_is_held_by_the_broker_and_expires_is_stamped() -> None:
    app, broker = make_app()

    @app.task
    async def later() -> None: ...

    await later.apply_async(countdown=60, expires=120, task_id="fixed-id")
    stats = await broker.stats("default")
    assert (stats.ready, stats.delayed) == (0, 1)


def test_unknown_broker_scheme_and_memory_options_are_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="unknown broker URL scheme"):
        App(broker="kafka://x")
    with pytest.raises(ConfigurationError, match="unknown memory broker option 'visibility_tim"):
        App(broker="memory://?visibility_timeout=3")


def test_broker_options_beside_a_broker_instance_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"visibility_timout.*broker URL"):
        App(MemoryBroker(), visibility_timout=3)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "redis://127.0.0.1/0?result_expire=5",
            "unknown Redis results option 'result_expire' (did you mean 'result_expires')",
        ),
        ("redis://127.0.0.1/0?result_expires=-1", "result_expires"),
        ("memory://?result_expire=5", "did you mean 'result_expires'"),
        ("postgres://x", "unknown results URL scheme"),
    ],
)
def test_result_backend_typos_are_refused_at_construction(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        App(results=url)


def test_app_without_broker_uses_the_environment_then_the_sqlite_file_here(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIOACK_BROKER_URL", raising=False)
    monkeypatch.delenv("AIOACK_RESULTS_URL", raising=False)
    app = App()
    assert isinstance(app.broker, SQLiteBroker)
    assert app.broker.location == "sqlite:///aioack.db" and app.results is None
    monkeypatch.setenv("AIOACK_BROKER_URL", "memory://")
    monkeypatch.setenv("AIOACK_RESULTS_URL", "memory://")
    from_env = App()
    assert isinstance(from_env.broker, MemoryBroker) and from_env.results is not None
    # What the code names wins over the environment.
    assert isinstance(App(f"sqlite:///{tmp_path}/x.db").broker, SQLiteBroker)


async def test_the_default_file_is_made_in_the_current_directory_on_connect(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIOACK_BROKER_URL", raising=False)
    app = App()
    assert not (tmp_path / "aioack.db").exists(), "building an App touches no file"
    async with app:
        assert app.broker.location == f"sqlite:///{tmp_path / 'aioack.db'}"
    assert (tmp_path / "aioack.db").exists()
