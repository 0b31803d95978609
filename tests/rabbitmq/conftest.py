"""Fixtures for RabbitMQ-only tests: a broker, unique queues, a cuttable proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from aioack.brokers.rabbitmq import RabbitMQBroker
from tests.conftest import TEST_BROKER_OPTIONS
from tests.proxy import TcpProxy
from tests.support import AMQP_URL, require_service, unique


@pytest.fixture
def amqp_url() -> str:
    require_service(AMQP_URL)
    return AMQP_URL


@pytest.fixture
def make_rabbit(amqp_url: str) -> Callable[..., RabbitMQBroker]:
    def make(url: str | None = None, **options: object) -> RabbitMQBroker:
        merged = {**TEST_BROKER_OPTIONS["rabbitmq"], **options}
        return RabbitMQBroker.from_url(url or amqp_url, **merged)

    return make


@pytest.fixture
async def rabbit(make_rabbit: Callable[..., RabbitMQBroker]) -> AsyncIterator[RabbitMQBroker]:
    broker = make_rabbit()
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.aclose()


@pytest.fixture
async def queue_name(rabbit: RabbitMQBroker) -> AsyncIterator[str]:
    """A unique queue, deleted (with its delay and dead-letter queues) afterwards."""
    name = unique("rq")
    yield name
    await rabbit.delete([name])


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    p = await TcpProxy(amqp_url).start()
    try:
        yield p
    finally:
        await p.aclose()
