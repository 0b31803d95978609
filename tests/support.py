"""Shared test helpers: waiting without sleeps, reaching real services."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("AIOACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AIOACK_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def require_service(url: str) -> None:
    """Skip when the service at ``url`` is unreachable; fail instead under CI."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    if port is None:
        port = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671}[parts.scheme]
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{parts.scheme} at {host}:{port} unreachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: brokers must be up)")
        pytest.skip(message)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)
