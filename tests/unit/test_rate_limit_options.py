"""Rate limits without a network: the forms ``rate_limit`` takes, bad ones refused at
decoration time with a message that says what is accepted, and a worker without a
result backend refusing to start."""

from __future__ import annotations

import pytest

from aioack import App, ConfigurationError
from aioack._rate import parse_rate
from aioack.brokers.memory import MemoryBroker


@pytest.mark.parametrize(
    ("value", "interval_s"),
    [
        ("100/m", 0.6),
        ("20/s", 0.05),
        ("3600/h", 1.0),
        ("0.5/s", 2.0),
        (" 10 / s ", 0.1),
        ("10", 0.1),  # Celery: a number alone is per second
        (10, 0.1),
        (2.5, 0.4),
    ],
)
def test_celerys_rate_forms_are_accepted(value: str | float, interval_s: float) -> None:
    app = App(broker=MemoryBroker())

    @app.task(rate_limit=value)
    async def send() -> None: ...

    rate = send.options.rate
    assert rate is not None and rate.interval_s == pytest.approx(interval_s)


@pytest.mark.parametrize(
    "value", ["100/x", "0/s", "-1/m", "abc", "", "10/sec", "1e3/s", "nan", True, [10], 0, -2.0]
)
def test_a_bad_rate_fails_at_decoration_and_says_which_forms_are_accepted(value: object) -> None:
    app = App(broker=MemoryBroker())
    with pytest.raises(ConfigurationError, match=r'rate_limit=.*"N/s", "N/m" or "N/h"'):

        @app.task(rate_limit=value)
        async def send() -> None: ...

    assert app.tasks == {}


@pytest.mark.parametrize("value", ["1000000/s", "0.01/h", float("inf")])
def test_a_rate_out_of_bounds_fails_at_decoration(value: object) -> None:
    app = App(broker=MemoryBroker())
    with pytest.raises(ConfigurationError, match="rate_limit="):

        @app.task(rate_limit=value)
        async def send() -> None: ...


def test_a_late_delivery_keeps_its_token_a_tenth_of_the_period_or_two_intervals() -> None:
    assert parse_rate("20/s").late_s == pytest.approx(0.1)
    assert parse_rate("100/m").late_s == pytest.approx(6.0)
    assert parse_rate("1/s").late_s == pytest.approx(2.0)


async def test_a_worker_without_a_result_backend_refuses_to_start() -> None:
    app = App(broker=MemoryBroker())

    @app.task(queue="q", rate_limit="10/s")
    async def send() -> None: ...

    with pytest.raises(ConfigurationError, match=r"rate_limit on tasks .*App\(results="):
        await app.worker(["q"]).run(burst=True)
