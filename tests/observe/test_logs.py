"""Structured logs from a real worker process: every line parses, events carry their
fields, no credential and no unredacted value ever appears."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from aioack import App
from tests.support import AMQP_URL, REDIS_URL, require_service

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-pa55"


async def _enqueue(url: str) -> None:
    from tests.apps import logging_app

    logging_app.app.use_broker(url)
    async with logging_app.app:
        await logging_app.ok.delay("visible-token-123")
        await logging_app.flaky.delay()
        await logging_app.broken.delay()


def _worker(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "aioack", "worker", "tests.apps.logging_app:app", "--burst"]
    argv += ["--broker", url, *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOACK_")}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def _events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


async def test_every_json_line_parses_and_carries_the_event_fields(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/logs.db"
    await _enqueue(url)
    done = _worker(url, "--log-format", "json", "--log-level", "DEBUG")
    assert done.returncode == 0, done.stderr
    lines = _events(done.stderr)  # every line is one JSON object, or this raises
    by_event = Counter(line.get("event") for line in lines)
    assert by_event["worker_started"] == by_event["worker_stopped"] == 1
    assert by_event["received"] == 4 and by_event["started"] == 4
    assert by_event["acked"] == 2 and by_event["retry_scheduled"] == 1
    assert by_event["dead_lettered"] == 1 and by_event["failed"] == 1
    worker_ids = {line["worker_id"] for line in lines if "worker_id" in line}
    assert len(worker_ids) == 1
    for line in lines:
        if line.get("event") in ("started", "acked", "retry_scheduled", "dead_lettered"):
            for field in ("task", "task_id", "queue", "attempt", "delivery_count"):
                assert line[field] is not None, (field, line)
    [acked_ok] = [x for x in lines if x.get("event") == "acked" and x["task"] == "logs.ok"]
    assert isinstance(acked_ok["duration_s"], float)
    [retry] = [x for x in lines if x.get("event") == "retry_scheduled"]
    assert retry["delay_s"] == pytest.approx(0.01)
    [dead] = [x for x in lines if x.get("event") == "dead_lettered"]
    assert dead["reason"] == "failed" and "ValueError" in dead["detail"]
    [failed] = [x for x in lines if x.get("event") == "failed"]
    assert "Traceback (most recent call last)" in failed["traceback"]
    # Arguments and return values are not logged without a redactor.
    assert "visible-token-123" not in done.stderr


async def test_values_are_logged_only_as_the_redactor_lets_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/logs.db"
    await _enqueue(url)
    done = _worker(url, "--log-format", "json", "--log-values", "tests.apps.logging_app:redact")
    assert done.returncode == 0, done.stderr
    lines = _events(done.stderr)
    [started] = [x for x in lines if x.get("event") == "started" and x["task"] == "logs.ok"]
    assert started["arguments"] == {"args": ["***"], "kwargs": {}}
    [acked] = [x for x in lines if x.get("event") == "acked" and x["task"] == "logs.ok"]
    assert acked["result"] == "***"
    assert "visible-token-123" not in done.stderr


async def test_a_text_event_stays_one_line_whatever_the_task_raised(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/logs.db"
    await _enqueue(url)
    done = _worker(url)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    [raised] = [line for line in lines if " raised ValueError" in line]
    assert raised.endswith("raised ValueError: line one\\nforged INFO line two")
    # The traceback follows, indented: no line but an event's starts at column 0.
    assert not any(line.startswith("forged") for line in lines)
    assert any(line.startswith("    forged INFO line two") for line in lines)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:{s}@127.0.0.1:6379/0",  # Redis has no password: AUTH is refused
        "redis://user:{s}@127.0.0.1:1/0",  # nothing listens
        "amqp://guest:{s}@127.0.0.1:5672/",  # a wrong password
        "amqp://guest:{s}@127.0.0.1:1/",  # nothing listens
    ],
    ids=["redis-auth-refused", "redis-down", "amqp-auth-refused", "amqp-down"],
)
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_log_line_ever_shows_a_password(url: str, fmt: str) -> None:
    if url.startswith("redis://:"):
        require_service(REDIS_URL)
    if url.startswith("amqp://guest:{s}@127.0.0.1:5672"):
        require_service(AMQP_URL)
    broker = url.format(s=SECRET)
    results = f"redis://:{SECRET}@127.0.0.1:6379/0"
    done = _worker(broker, "--results", results, "--log-format", fmt, "--log-level", "DEBUG")
    assert done.returncode != 0  # none of these can work
    assert SECRET not in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]


def test_the_app_itself_never_shows_a_password() -> None:
    app = App(f"redis://:{SECRET}@127.0.0.1:6379/0", results=f"redis://:{SECRET}@127.0.0.1:6379/0")
    assert SECRET not in app.broker.location
    assert app.results is not None and SECRET not in app.results.location
    assert SECRET not in repr(app.broker.options)


async def test_a_lease_taken_over_is_logged_as_lease_lost_with_its_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import sqlite3

    path = tmp_path / "lease.db"
    app, running = App(f"sqlite:///{path}?visibility_timeout=0.3"), asyncio.Event()

    @app.task(queue="leases")
    async def long_one() -> None:
        running.set()
        await asyncio.sleep(30)  # cancelled once the worker learns it lost the delivery

    async with app:
        await long_one.delay()
    caplog.set_level("INFO", logger="aioack")
    async with app.worker(["leases"], concurrency=1, shutdown_timeout=1):
        await asyncio.wait_for(running.wait(), 10)
        with sqlite3.connect(path) as other:  # another process took the lease over
            other.execute("UPDATE messages SET owner = 'someone-else', token = token + 1")
        await asyncio.sleep(0)

        def logged(event: str) -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.__dict__.get("event") == event]

        deadline = asyncio.get_running_loop().time() + 10
        while not logged("lease_lost") and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    [lost] = logged("lease_lost")
    assert lost.levelname == "WARNING"
    fields = {k: lost.__dict__[k] for k in ("task", "task_id", "queue", "attempt", "worker_id")}
    assert fields["task"] == long_one.name and fields["queue"] == "leases", fields
    assert fields["task_id"] and fields["attempt"] == 1 and fields["worker_id"]
