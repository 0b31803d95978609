"""Result backends, picked from a URL by scheme: ``sqlite://``, ``redis://``, ``memory://``."""

from __future__ import annotations

from typing import Any

from aioack.results.base import (
    DEFAULT_RESULT_EXPIRES_S,
    FINAL_STATES,
    Claim,
    ClaimStatus,
    ResultBackend,
    ResultRecord,
    State,
)
from aioack.results.memory import MemoryResultBackend
from aioack.urls import Scheme, load

__all__ = [
    "DEFAULT_RESULT_EXPIRES_S",
    "FINAL_STATES",
    "SCHEMES",
    "Claim",
    "ClaimStatus",
    "MemoryResultBackend",
    "ResultBackend",
    "ResultRecord",
    "State",
    "backend_from_url",
]

#: URL scheme -> the backend class, and the pip extra that brings its client.
SCHEMES: dict[str, Scheme] = {
    "memory": Scheme("aioack.results.memory", "MemoryResultBackend"),
    "sqlite": Scheme("aioack.results.sqlite", "SQLiteResultBackend"),
    "redis": Scheme("aioack.results.redis", "RedisResultBackend", "redis"),
    "rediss": Scheme("aioack.results.redis", "RedisResultBackend", "redis"),
}


def backend_from_url(url: str, **options: Any) -> ResultBackend:
    """Build the result backend a URL names; ``options`` override the URL's query.

    Raises:
        ConfigurationError: unknown scheme, missing client library, bad option.
    """
    backend_cls: type[ResultBackend] = load(url, SCHEMES, what="results")
    return backend_cls.from_url(url, **options)
