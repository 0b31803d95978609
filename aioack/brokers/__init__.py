"""Brokers, picked from a URL by scheme. Optional clients are imported lazily."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from aioack.brokers.base import Broker, Consumer, DeadLetter, Delivery, QueueStats
from aioack.brokers.memory import MemoryBroker
from aioack.errors import ConfigurationError

__all__ = [
    "Broker",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "MemoryBroker",
    "QueueStats",
    "broker_from_url",
]

#: scheme -> (module, class, pip extra that provides its client)
_SCHEMES: dict[str, tuple[str, str, str]] = {
    "memory": ("aioack.brokers.memory", "MemoryBroker", ""),
    "redis": ("aioack.brokers.redis", "RedisBroker", "redis"),
    "rediss": ("aioack.brokers.redis", "RedisBroker", "redis"),
    "unix": ("aioack.brokers.redis", "RedisBroker", "redis"),
    "amqp": ("aioack.brokers.rabbitmq", "RabbitMQBroker", "rabbitmq"),
    "amqps": ("aioack.brokers.rabbitmq", "RabbitMQBroker", "rabbitmq"),
}


def broker_from_url(url: str, **options: Any) -> Broker:
    """Build the broker a URL names; ``options`` override the URL's query.

    Raises:
        ConfigurationError: unknown scheme, missing client library, bad option.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ConfigurationError(f"unknown broker URL scheme {scheme!r}; use one of {known}")
    module_name, class_name, extra = _SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"{scheme}:// needs the {extra} client: pip install 'aioack[{extra}]' ({exc})"
        ) from exc
    broker_cls: type[Broker] = getattr(module, class_name)
    broker: Broker = broker_cls.from_url(url, **options)  # type: ignore[attr-defined]
    return broker
