"""Health probes: readiness follows the worker and its broker connection; liveness the loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from aioack import App
from aioack.brokers import broker_from_url
from aioack.observe.health import HealthProbe
from tests.proxy import TcpProxy
from tests.support import REDIS_URL, unique, wait_until

ROOT = Path(__file__).resolve().parents[2]


def get(port: int, path: str) -> tuple[int, str]:
    """A probe's view: the status code and the body's one line."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()


async def probe_says(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, port, path)


async def test_readiness_follows_start_the_broker_connection_and_shutdown(
    redis_proxy: TcpProxy,
) -> None:
    proxy = redis_proxy
    queue = unique("health")
    broker = broker_from_url(proxy.url(), visibility_timeout=5, poll_interval=0.05)
    app, started = App(broker=broker), asyncio.Event()

    @app.task(queue=queue)
    async def slow() -> None:
        started.set()
        await asyncio.sleep(1.0)

    probe = HealthProbe()
    await probe.start(port=0)
    try:
        assert await probe_says(probe.port, "/readyz") == (503, "starting")
        assert (await probe_says(probe.port, "/livez"))[0] == 200
        async with app.worker([queue], concurrency=1, shutdown_timeout=5, hooks=[probe]) as worker:
            assert await probe_says(probe.port, "/readyz") == (200, "ready")

            async def status(code: int) -> bool:
                return (await probe_says(probe.port, "/readyz"))[0] == code

            proxy.refuse()  # the broker connection is cut, and stays down
            await wait_until(lambda: status(503), timeout=10, message="not ready")
            assert "broker unreachable" in (await probe_says(probe.port, "/readyz"))[1]
            proxy.accept()
            await wait_until(lambda: status(200), timeout=10, message="ready again")
            await slow.delay()
            await asyncio.wait_for(started.wait(), 10)
            worker.stop()  # a running task: the shutdown takes a while
            await wait_until(lambda: status(503), timeout=2, message="not ready while stopping")
            assert (await probe_says(probe.port, "/readyz"))[1] == "stopping"
            assert (await probe_says(probe.port, "/livez"))[0] == 200, "alive while draining"
    finally:
        await probe.stop()
        await broker.aclose()  # left open, its connections are closed by the GC, in a later test
        async with broker_from_url(REDIS_URL) as cleanup:
            await cleanup.delete([queue])  # type: ignore[attr-defined]


async def test_liveness_fails_while_the_event_loop_is_blocked() -> None:
    probe = HealthProbe(loop_bound_s=0.3)
    await probe.start(port=0)
    try:
        answers: list[tuple[int, str]] = []
        asking = threading.Thread(target=lambda: answers.append(get(probe.port, "/livez")))
        asking.start()
        time.sleep(0.8)
        await asyncio.to_thread(asking.join, 5)
        assert answers == [(503, "the event loop did not answer within 0.3s")]
        assert await probe_says(probe.port, "/livez") == (200, "alive")
        assert (await probe_says(probe.port, "/nope"))[0] == 404
    finally:
        await probe.stop()


def test_a_worker_process_serves_its_probes(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOACK_")}
    argv = [sys.executable, "-m", "aioack", "worker", "tests.apps.simple:app"]
    argv += ["--broker", f"sqlite:///{tmp_path}/q.db", "--health-port", str(port)]
    worker = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if get(port, "/readyz") == (200, "ready"):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert get(port, "/readyz") == (200, "ready")
        assert get(port, "/livez") == (200, "alive")
    finally:
        worker.terminate()
        assert worker.wait(20) == 0


def test_a_port_in_use_is_a_configuration_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *(sys.executable, "-m", "aioack", "worker", "tests.apps.simple:app", "--burst"),
                *("--broker", f"sqlite:///{tmp_path}/q.db", "--health-port", str(port)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 3, done.stderr
    assert f"--health-port {port}: cannot listen" in done.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_idle_connections_cannot_pile_up_threads_and_end_on_their_own() -> None:
    import socket

    from aioack.observe import health

    before = threading.active_count()
    probe = HealthProbe()
    await probe.start(port=0)
    idle = [socket.create_connection(("127.0.0.1", probe.port)) for _ in range(60)]
    try:
        await asyncio.sleep(0.3)
        assert threading.active_count() <= before + 1 + health.MAX_OPEN_PROBES, "a thread each"
        for sock in idle:
            sock.close()
        await wait_until(
            lambda: threading.active_count() <= before + 1,
            timeout=health.PROBE_IO_TIMEOUT_S + 3,
            message="the probe threads to end",
        )
        assert (await probe_says(probe.port, "/livez"))[0] == 200
    finally:
        for sock in idle:
            sock.close()
        await probe.stop()


async def test_readiness_never_shows_a_password_from_the_broker_error() -> None:
    from aioack.hooks import ConnectionEvent

    probe = HealthProbe()
    await probe.start(port=0)
    try:
        probe.on_connection_lost(
            ConnectionEvent("RabbitMQBroker", "cannot reach amqp://guest:s3cret@10.0.0.1:5672/")
        )
        probe._started = True
        code, body = await probe_says(probe.port, "/readyz")
        assert code == 503 and "s3cret" not in body and "amqp://guest:***@" in body
    finally:
        await probe.stop()
