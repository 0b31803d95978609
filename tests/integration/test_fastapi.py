"""FastAPI embedding, through the example service: enqueue over HTTP, process, read back.

In-process through httpx's ASGI transport, through a real uvicorn server on a
free loopback port (embedded worker, and a separate ``python -m aioack
worker`` process), and the example started with ``uvicorn`` as documented.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from aioack.brokers import broker_from_url
from aioack.errors import ConfigurationError
from aioack.integrations.fastapi import aioack_lifespan, get_app
from examples.fastapi_app import create
from tests.support import REDIS_URL, require_service, unique, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def done(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """Wait for a final state, reading it the way a client would (GET)."""
    body: dict[str, Any] = {}

    async def final() -> bool:
        nonlocal body
        body = (await client.get(f"/orders/{task_id}")).json()
        return body["state"] in ("SUCCESS", "FAILURE", "DEAD_LETTERED")

    await wait_until(final, timeout=10, interval=0.05, message=f"task {task_id} to finish")
    return body


async def post_order(client: httpx.AsyncClient, order_id: str, **extra: object) -> str:
    response = await client.post("/orders", json={"order_id": order_id, "cents": 1250, **extra})
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


@pytest.fixture
def redis_urls() -> Iterator[tuple[str, str, str]]:
    """(broker URL, results URL with a unique key prefix, unique queue)."""
    require_service(REDIS_URL)
    queue = unique("web")
    yield REDIS_URL, f"{REDIS_URL}?key_prefix={unique('aioack-test')}", queue


@pytest.fixture
async def cleanup_queue(redis_urls: tuple[str, str, str]) -> AsyncIterator[None]:
    yield
    broker = broker_from_url(redis_urls[0])
    async with broker:
        await broker.delete([redis_urls[2]])


@contextlib.asynccontextmanager
async def uvicorn_server(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A real uvicorn server in this loop on a free loopback port, and a client for it."""
    port = free_port()
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or serving.done(), timeout=10)
        assert not serving.done(), "uvicorn did not start"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await serving


async def test_asgi_transport_enqueue_process_and_read_with_the_embedded_worker() -> None:
    _, api = create("memory://", "memory://", queue=unique("web"), embedded_worker=True)
    transport = httpx.ASGITransport(app=api)
    # ASGITransport sends no lifespan events: enter the lifespan here, as uvicorn would.
    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        task_id = await post_order(client, "o-1")
        assert task_id == "order-o-1"
        body = await done(client, task_id)
        assert body["state"] == "SUCCESS"
        assert body["result"]["order_id"] == "o-1" and body["result"]["cents"] == 1250
        # The same order posted again is the same task id: it does not run twice.
        assert await post_order(client, "o-1") == task_id
        assert (await done(client, task_id))["result"] == body["result"]
        unknown = (await client.get("/orders/nope")).json()
        assert unknown["state"] == "PENDING"


async def test_get_app_outside_the_lifespan_says_what_to_do() -> None:
    api = FastAPI()

    @api.get("/")
    async def handler() -> None:
        return None

    class FakeRequest:
        app = api

    with pytest.raises(ConfigurationError, match="aioack_lifespan"):
        get_app(FakeRequest())  # type: ignore[arg-type]


async def test_uvicorn_with_redis_and_the_embedded_worker(
    redis_urls: tuple[str, str, str], cleanup_queue: None
) -> None:
    broker_url, results_url, queue = redis_urls
    _, api = create(broker_url, results_url, queue=queue, embedded_worker=True)
    async with uvicorn_server(api) as client:
        ids = [await post_order(client, f"e-{i}") for i in range(5)]
        for task_id in ids:
            assert (await done(client, task_id))["state"] == "SUCCESS"


async def test_uvicorn_producer_with_a_separate_worker_process(
    redis_urls: tuple[str, str, str], cleanup_queue: None
) -> None:
    broker_url, results_url, queue = redis_urls
    _, api = create(broker_url, results_url, queue=queue, embedded_worker=False)
    env = {
        **os.environ,
        "AIOACK_BROKER_URL": broker_url,
        "AIOACK_RESULTS_URL": results_url,
        "AIOACK_EXAMPLE_QUEUE": queue,
    }
    worker = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "aioack", "worker", "examples.fastapi_app:tasks", "-Q", queue],
        cwd=ROOT,
        env=env,
    )
    try:
        async with uvicorn_server(api) as client:
            task_id = await post_order(client, "w-1")
            body = await done(client, task_id)
            assert body["state"] == "SUCCESS" and body["result"]["order_id"] == "w-1"
    finally:
        worker.terminate()
        assert await asyncio.wait_for(worker.wait(), 15) == 0, "SIGTERM drains: exit 0"


async def test_shutdown_with_tasks_in_flight_hands_them_back(
    redis_urls: tuple[str, str, str], cleanup_queue: None
) -> None:
    broker_url, results_url, queue = redis_urls
    tasks, api = create(broker_url, results_url, queue=queue, embedded_worker=True)
    # A short grace period: the running task (30 s of work) is cut off and handed back.
    api.router.lifespan_context = aioack_lifespan(
        tasks, worker=True, queues=[queue], shutdown_timeout=0.2
    )
    async with uvicorn_server(api) as client:
        task_id = await post_order(client, "slow", work_s=30)

        async def started() -> bool:
            return (await client.get(f"/orders/{task_id}")).json()["state"] == "STARTED"

        await wait_until(started, timeout=10, message="the slow task to start")
    broker = broker_from_url(broker_url)
    async with broker:
        stats = await broker.stats(queue)
    assert (stats.ready, stats.unacked) == (1, 0), f"not handed back: {stats}"


async def test_the_example_runs_with_uvicorn_as_documented(tmp_path: Path) -> None:
    """A new user's first run: `uvicorn examples.fastapi_app:app`, no servers, no settings.

    From an empty directory (the default aioack.db is made there, not in the repository).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOACK_")}
    server = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", str(port)],
        *["--app-dir", str(ROOT)],
        cwd=tmp_path,
        env=env,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def up() -> bool:
                try:
                    await client.get("/docs")
                except httpx.TransportError:
                    return False
                return True

            await wait_until(up, timeout=15, interval=0.1, message="uvicorn to listen")
            task_id = await post_order(client, "new-user")
            assert (await done(client, task_id))["result"]["order_id"] == "new-user"
    finally:
        server.terminate()
        # uvicorn re-raises the SIGTERM it handled once its shutdown (our lifespan) is done.
        assert await asyncio.wait_for(server.wait(), 15) in (0, -signal.SIGTERM)
    assert (tmp_path / "aioack.db").exists(), "the queue and results were in the default file"
