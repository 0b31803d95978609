"""Shared test helpers: waiting without sleeps, reaching real services."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("AIOACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: The checkout's root: worker processes start here, so ``tests.apps`` imports.
REPOSITORY = Path(__file__).resolve().parents[1]
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


async def start_worker_process(
    app_ref: str, broker_url: str, env: dict[str, str], log: Path, *options: str
) -> asyncio.subprocess.Process:
    """``python -m aioack worker APP --broker URL OPTIONS...`` from the repository root,
    its output appended to ``log``."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "aioack", "worker", app_ref, "--broker", broker_url],
            *options,
            cwd=REPOSITORY,
            env=env,
            stdout=out,
            stderr=out,
        )


async def stop_worker_process(worker: asyncio.subprocess.Process, timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if worker.returncode is not None:
        return
    worker.terminate()
    try:
        await asyncio.wait_for(worker.wait(), timeout_s)
    except TimeoutError:
        worker.kill()
        await worker.wait()
