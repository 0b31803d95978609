"""Brokers, picked from a URL by scheme. Optional clients are imported lazily.

A new broker is one folder (``brokers/<name>/``), one row in ``SCHEMES``,
one entry in the contract suites' broker list (tests/conftest.py) and one
docs page: see docs/writing-a-broker.md.
"""

from __future__ import annotations

from typing import Any

from aioack.brokers.base import (
    Broker,
    BrokerAdmin,
    BrokerCore,
    Consumer,
    DeadLetter,
    Delivery,
    LetterFilter,
    LetterPass,
    QueueStats,
    WorkerRecord,
)
from aioack.brokers.memory import MemoryBroker
from aioack.urls import Scheme, load

__all__ = [
    "SCHEMES",
    "Broker",
    "BrokerAdmin",
    "BrokerCore",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "LetterFilter",
    "LetterPass",
    "MemoryBroker",
    "QueueStats",
    "WorkerRecord",
    "broker_from_url",
]

#: URL scheme -> the broker class, and the pip extra that brings its client.
SCHEMES: dict[str, Scheme] = {
    "memory": Scheme("aioack.brokers.memory", "MemoryBroker"),
    "sqlite": Scheme("aioack.brokers.sqlite", "SQLiteBroker"),
    "redis": Scheme("aioack.brokers.redis", "RedisBroker", "redis"),
    "rediss": Scheme("aioack.brokers.redis", "RedisBroker", "redis"),
    "unix": Scheme("aioack.brokers.redis", "RedisBroker", "redis"),
    "amqp": Scheme("aioack.brokers.rabbitmq", "RabbitMQBroker", "rabbitmq"),
    "amqps": Scheme("aioack.brokers.rabbitmq", "RabbitMQBroker", "rabbitmq"),
}


def broker_from_url(url: str, **options: Any) -> Broker:
    """Build the broker a URL names; ``options`` override the URL's query.

    Raises:
        ConfigurationError: unknown scheme, missing client library, bad option.
    """
    broker_cls: type[Broker] = load(url, SCHEMES, what="broker")
    return broker_cls.from_url(url, **options)
