"""Result backends, picked from a URL by scheme: ``memory://``, ``redis://``, ``rediss://``."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from aioack.errors import ConfigurationError
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

__all__ = [
    "DEFAULT_RESULT_EXPIRES_S",
    "FINAL_STATES",
    "Claim",
    "ClaimStatus",
    "MemoryResultBackend",
    "ResultBackend",
    "ResultRecord",
    "State",
    "backend_from_url",
]

#: scheme -> (module, class); the redis client is imported only when used.
_SCHEMES: dict[str, tuple[str, str]] = {
    "memory": ("aioack.results.memory", "MemoryResultBackend"),
    "redis": ("aioack.results.redis", "RedisResultBackend"),
    "rediss": ("aioack.results.redis", "RedisResultBackend"),
}


def backend_from_url(url: str, **options: Any) -> ResultBackend:
    """Build the result backend a URL names; ``options`` override the URL's query.

    Raises:
        ConfigurationError: unknown scheme, missing client library, bad option.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ConfigurationError(f"unknown results URL scheme {scheme!r}; use one of {known}")
    module_name, class_name = _SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"{scheme}:// results need the redis client: pip install 'aioack[redis]' ({exc})"
        ) from exc
    try:
        backend: ResultBackend = getattr(module, class_name).from_url(url, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"results URL {url!r}: {exc}") from exc
    return backend
