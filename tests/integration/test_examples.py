"""The examples run as their docstrings say (effect-once against real Redis)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REDIS_URL, require_service

ROOT = Path(__file__).resolve().parents[2]


def test_effect_once_example_credits_once_over_a_retry_and_a_duplicate() -> None:
    require_service(REDIS_URL)
    done = subprocess.run(
        [sys.executable, "examples/effect_once.py", REDIS_URL],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "attempt 1: credit applied",
        "attempt 2: credit already applied",
        "results: 500 500",
        "balance of ada: 500 cents",
    ]


def test_timing_hook_example_sees_every_run_and_settle() -> None:
    done = subprocess.run(
        [sys.executable, "examples/timing_hook.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("broken: 1 runs, longest ")
    assert lines[1].startswith("resize: 3 runs, longest ")
    assert lines[2:] == ["ack: 3", "dead_letter (failed): 1"]


QUICKSTART_SETTLES = [
    "sync_crm attempt 1: failed, retry",
    "sync_crm attempt 3: done, acked",
    "poll_report attempt 2: done, acked",
    "resize_image attempt 1: done, acked",
    "charge_card attempt 2: dead-lettered (failed: ConnectionError",
]


def _check_quickstart(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "refused at the call site: send_welcome: argument 'user_id'" in out
    assert "enqueued 6 runs into" in out
    assert out.count("send_welcome attempt 1: done, acked") == 2
    for line in QUICKSTART_SETTLES:
        assert line in out, line
    assert "the worker exited with 0" in out
    assert "dead letter kept in queue.db: reason=failed" in out


def test_the_quickstart_runs_a_worker_process_on_the_embedded_default() -> None:
    done = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    _check_quickstart(done)


@pytest.mark.slow
def test_the_quickstart_needs_no_server_and_no_client_library(tmp_path: Path) -> None:
    # As a new user: `pip install aioack` alone (no redis, no aio-pika: neither
    # server can even be reached), then the README's first command.
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), str(ROOT)],
        check=True,
        timeout=300,
    )
    for client in ("redis", "aio_pika"):
        probe = subprocess.run([python, "-c", f"import {client}"], capture_output=True)
        assert probe.returncode != 0, f"{client} is installed: this test proves nothing"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOACK_")}
    done = subprocess.run(
        [python, "examples/quickstart.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    _check_quickstart(done)


def test_queue_limits_example_refuses_then_waits_for_room() -> None:
    done = subprocess.run(
        [sys.executable, "examples/queue_limits.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "queued 3, then QueueFull: queue 'emails' is full (max_length=3): message not enqueued",
        "watermark: emails length reached 2",
        "a waiting publish got in once the worker made room",
        "sent 4 emails",
    ]


async def test_the_celery_fastapi_port_answers_as_the_original_does() -> None:
    import httpx

    from examples.celery_fastapi_port import create

    _, api = create("memory://", "memory://", seconds_per_type=0.01, embedded_worker=True)
    transport = httpx.ASGITransport(app=api)
    async with (
        api.router.lifespan_context(api),  # ASGITransport sends no lifespan events
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        created = await client.post("/tasks", json={"type": 1})
        assert created.status_code == 201
        task_id = created.json()["task_id"]
        body = (await client.get(f"/tasks/{task_id}")).json()
        for _ in range(500):  # the run takes 0.01 s; bounded, never a fixed sleep
            if body["task_status"] == "SUCCESS":
                break
            assert body["task_status"] in {"PENDING", "STARTED"}
            await asyncio.sleep(0.01)
            body = (await client.get(f"/tasks/{task_id}")).json()
        assert body == {"task_id": task_id, "task_status": "SUCCESS", "task_result": True}
        # A type that is not a number is refused by the API, before anything is queued.
        assert (await client.post("/tasks", json={"type": "x"})).status_code == 422


def test_the_celery_django_tasks_port_runs_and_retries_as_celery_would() -> None:
    from aioack.decide import retry_delay_s
    from examples.celery_django_tasks import error_backoff_test, error_task

    done = subprocess.run(
        [sys.executable, "examples/celery_django_tasks.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[5, 20, 6]"]
    # Celery: retry_kwargs={"max_retries": 2, "countdown": 600}: two retries, 10 min apart.
    fixed = error_task.options
    assert [retry_delay_s(fixed, attempt, None) for attempt in (1, 2)] == [600, 600]
    assert fixed.retries_left(2) and not fixed.retries_left(3)
    # Celery: retry_backoff=5, retry_jitter=False, max_retries=3: 5 s, 10 s, 20 s.
    backoff = error_backoff_test.options
    assert [retry_delay_s(backoff, attempt, None) for attempt in (1, 2, 3)] == [5, 10, 20]
    assert backoff.retries_left(3) and not backoff.retries_left(4)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_sync_producer_example_enqueues_and_reads_results_from_sync_code(
    kind: str, tmp_path: Path
) -> None:
    args: list[str] = []
    prefix = f"aioack-sync-example-{os.getpid()}"
    if kind == "redis":
        require_service(REDIS_URL)
        args = [f"{REDIS_URL}?key_prefix={prefix}", f"{REDIS_URL}?key_prefix={prefix}-r"]
    try:
        done = subprocess.run(
            [sys.executable, "examples/sync_producer.py", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        if kind == "redis":
            _delete_redis_keys(f"{prefix}*")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "2 + 2 = 4",
        "40 + 2 = 42",
        "tags: 2",
        "refused at the call site: add: argument 'y': Input should be a valid integer",
        "8 threads: 16 results, all right: True",
        "the worker exited with 0",
    ]


def _delete_redis_keys(pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(pattern))
    if keys:
        client.delete(*keys)
    client.close()
