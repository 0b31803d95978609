"""Serving metrics: a real ``python -m aioack worker --metrics-port`` process, and FastAPI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from aioack import App
from aioack.brokers import broker_from_url
from aioack.cli import ExitCode, main
from aioack.message import Message
from aioack.observe.metrics import PrometheusMetrics
from examples.fastapi_app import TASK_NAME, create
from tests.conftest import TEST_BROKER_OPTIONS
from tests.observe.scrape import scrape, value
from tests.proxy import TcpProxy
from tests.support import REDIS_URL, require_service, unique, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVING = re.compile(rb"metrics: serving http://([\d.]+):(\d+)/metrics")
NOOP = "tests.apps.simple.noop"


async def _read_address(stderr: asyncio.StreamReader, seen: list[bytes]) -> tuple[str, int]:
    while line := await stderr.readline():
        seen.append(line)
        if match := SERVING.search(line):
            return match.group(1).decode(), int(match.group(2))
    raise AssertionError(b"".join(seen).decode(errors="replace"))


async def test_the_worker_process_serves_metrics_for_its_lifetime(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    broker = broker_from_url(url)
    async with broker:
        await broker.declare(["simple"])
        for i in range(3):
            await broker.publish(
                "simple", Message(id=f"n{i}", task=NOOP).encode(), message_id=f"n{i}"
            )
        await broker.publish("simple", b"garbage", message_id="g")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "aioack", "worker", "tests.apps.simple:app"),
        *("--broker", url, "--metrics-port", "0"),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen: list[bytes] = []
    try:
        host, port = await asyncio.wait_for(_read_address(process.stderr, seen), 30)
        metrics_url = f"http://{host}:{port}/metrics"
        async with httpx.AsyncClient() as client:

            async def all_settled() -> bool:
                s = await scrape(client, metrics_url)
                acked = {"task": NOOP, "queue": "simple", "action": "ack", "reason": ""}
                dead = {"queue": "simple", "state": "dead"}
                return (
                    value(s, "aioack_tasks_settled_total", acked) == 3
                    and value(s, "aioack_queue_messages", dead) == 1
                )

            await wait_until(all_settled, 30, message="3 acks and 1 dead letter scraped")
            s = await scrape(client, metrics_url)
            assert value(s, "aioack_broker_connected") == 1
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == ExitCode.OK
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass  # stopped with the worker


@pytest.mark.parametrize(
    ("flags", "code"),
    [(["--metrics-port", "70000"], ExitCode.USAGE), (["--metrics-port", "x"], ExitCode.USAGE)],
    ids=["port-out-of-range", "port-not-a-number"],
)
def test_bad_metrics_flags_are_usage_errors(flags: list[str], code: ExitCode) -> None:
    assert main(["worker", "tests.apps.simple:app", *flags]) == code


@pytest.mark.parametrize("what", ["metrics", "health"])
def test_a_host_without_its_port_is_refused_not_ignored(what: str, tmp_path: Path) -> None:
    argv = ["worker", "tests.apps.simple:app", "--broker", f"sqlite:///{tmp_path}/q.db"]
    assert main([*argv, f"--{what}-host", "0.0.0.0", "--burst"]) == ExitCode.CONFIG_ERROR


def test_a_health_port_out_of_range_is_a_usage_error() -> None:
    assert main(["worker", "tests.apps.simple:app", "--health-port", "70000"]) == ExitCode.USAGE


def test_a_taken_metrics_port_is_a_configuration_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        argv = ["worker", "tests.apps.simple:app", "--broker", f"sqlite:///{tmp_path}/q.db"]
        assert main([*argv, "--metrics-port", port, "--burst"]) == ExitCode.CONFIG_ERROR


async def test_metrics_mounted_in_the_fastapi_example_with_its_embedded_worker() -> None:
    queue = unique("web")
    _, api = create("memory://", "memory://", queue=queue, embedded_worker=True)
    transport = httpx.ASGITransport(app=api)
    async with (
        api.router.lifespan_context(api),  # ASGITransport sends no lifespan events
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        for n in range(4):
            body = {"order_id": f"o-{n}", "cents": 100}
            assert (await client.post("/orders", json=body)).status_code == 202
        labels = {"task": TASK_NAME, "queue": queue, "action": "ack", "reason": ""}

        async def acked() -> bool:
            return (
                value(await scrape(client, "/metrics/"), "aioack_tasks_settled_total", labels) == 4
            )

        await wait_until(acked, 10, message="4 acks scraped through FastAPI")
        depth = {"queue": queue, "state": "ready"}
        s = await scrape(client, "/metrics")  # Starlette redirects to /metrics/; followed
        assert ("aioack_queue_messages", tuple(sorted(depth.items()))) in s


async def test_broker_connected_drops_while_the_broker_is_unreachable_and_comes_back() -> None:
    require_service(REDIS_URL)
    proxy = await TcpProxy(REDIS_URL).start()
    queue, metrics = unique("conn"), PrometheusMetrics()
    broker = broker_from_url(proxy.url(), **TEST_BROKER_OPTIONS["redis"])
    app = App(broker=broker)
    worker = app.worker([queue], hooks=[metrics])
    try:
        async with (
            metrics.serve(0) as (host, port),
            httpx.AsyncClient() as client,
            worker,
        ):
            url = f"http://{host}:{port}/metrics"

            async def connected_is(want: float) -> bool:
                return value(await scrape(client, url), "aioack_broker_connected") == want

            assert await connected_is(1)
            proxy.refuse()  # an outage: live connections cut, new ones refused
            await wait_until(lambda: connected_is(0), 15, message="connected to drop to 0")
            proxy.accept()
            await wait_until(lambda: connected_is(1), 15, message="connected back to 1")
    finally:
        await broker.aclose()
        await proxy.aclose()
        async with broker_from_url(REDIS_URL) as direct:
            await direct.delete([queue])
