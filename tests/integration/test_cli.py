"""The command line, and a real worker process draining on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioack import App
from aioack.brokers import broker_from_url
from aioack.cli import ExitCode, main
from aioack.results import State
from aioack.results.redis import RedisResultBackend
from tests.apps import simple
from tests.support import REDIS_URL, require_service, unique

ROOT = Path(__file__).resolve().parents[2]
#: A fresh SQLite file for a burst run that must find its queues empty.
_EMPTY_SQLITE = f"sqlite:///{tempfile.mkdtemp(prefix='aioack-cli-')}/empty.db"


@pytest.fixture(autouse=True)
def _restore_simple_app() -> Iterator[None]:
    """main() points the imported App at --broker/--results; undo it for later tests."""
    yield
    simple.app.use_results(None)


def test_help_lists_commands_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "worker" in out and "examples:" in out
    assert all(code.name in out for code in ExitCode)


def test_python_dash_m_aioack_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aioack", "worker", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0 and "--prefetch" in done.stdout


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["worker"], ExitCode.USAGE),
        (["worker", "no.such.module:app"], ExitCode.APP_NOT_FOUND),
        (["worker", "tests.apps.simple:not_an_app"], ExitCode.APP_NOT_FOUND),
        (["worker", "tests.apps.simple"], ExitCode.APP_NOT_FOUND),
        (["worker", "tests.apps.simple:app", "--broker", "kafka://x"], ExitCode.CONFIG_ERROR),
        (["worker", "tests.apps.simple:app", "-c", "0", "--burst"], ExitCode.USAGE),
        (["worker", "tests.apps.simple:app", "-Q", "bad queue", "--burst"], ExitCode.CONFIG_ERROR),
        (
            ["worker", "tests.apps.simple:app", "--broker", "redis://127.0.0.1:1/0"],
            ExitCode.BROKER_UNAVAILABLE,
        ),
        (["worker", "tests.apps.simple:app", "--results", "kafka://x"], ExitCode.CONFIG_ERROR),
        (
            ["worker", "tests.apps.simple:app", "--results", "redis://127.0.0.1:1/0", "--burst"],
            ExitCode.BROKER_UNAVAILABLE,
        ),
        (
            ["worker", "tests.apps.simple:app", "--broker", "memory://", "--burst"],
            ExitCode.CONFIG_ERROR,
        ),
        (["worker", "tests.apps.simple:app", "--broker", _EMPTY_SQLITE, "--burst"], ExitCode.OK),
        (["worker", "tests.apps.simple:app", "--hook", "no.such:hook"], ExitCode.CONFIG_ERROR),
        (
            ["worker", "tests.apps.simple:app", "--hook", "tests.apps.simple:not_an_app"],
            ExitCode.CONFIG_ERROR,
        ),
    ],
    ids=[
        "no-app",
        "no-module",
        "not-an-app",
        "no-attribute",
        "bad-scheme",
        "zero-concurrency",
        "bad-queue",
        "broker-down",
        "bad-results-scheme",
        "results-down",
        "memory-refused",
        "burst-empty",
        "hook-not-found",
        "hook-observes-nothing",
    ],
)
def test_exit_codes(argv: list[str], code: ExitCode) -> None:
    assert main(argv) == code


def test_hook_flag_registers_a_hook_in_a_worker_process(tmp_path: Path) -> None:
    mark = tmp_path / "started"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "aioack", "worker", "tests.apps.simple:app", "--burst"),
            *("--broker", f"sqlite:///{tmp_path}/q.db", "--hook", "tests.apps.simple:MarkStarted"),
        ],
        env={**os.environ, "AIOACK_TEST_MARK": str(mark)},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert mark.read_text() == "simple"


async def test_results_flag_gives_a_worker_process_its_result_backend() -> None:
    """The App in tests.apps.simple keeps no results; --results makes the worker store them."""
    require_service(REDIS_URL)
    queue = unique("cli")
    results_url = f"{REDIS_URL}?key_prefix={unique('aioack-test')}"
    producer = App(broker=broker_from_url(REDIS_URL), results=results_url)
    noop = producer.task(name="tests.apps.simple.noop")(_noop_stub)
    result = await noop.apply_async(queue=queue)
    try:
        argv = ["--broker", REDIS_URL, "--results", results_url, "-Q", queue, "--burst"]
        worker = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "aioack", "worker", "tests.apps.simple:app", *argv], cwd=ROOT
        )
        assert await asyncio.wait_for(worker.wait(), 60) == ExitCode.OK
        assert await result.state() is State.SUCCESS
    finally:
        await producer.broker.delete([queue])
        assert isinstance(producer.results, RedisResultBackend)
        await producer.results.client.delete(f"{producer.results.prefix}:result:{result.id}")
        await producer.aclose()


async def _noop_stub() -> None:
    raise AssertionError("runs in the worker process only")


def _start_drain_worker(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    release = tmp_path / "release"
    env = {**os.environ, "RELEASE_FILE": str(release), "TASKS": "6", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.drain_worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, release


def _read_until(process: subprocess.Popen[str], wanted: int, prefix: str) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while sum(line.startswith(prefix) for line in lines) < wanted:
        assert time.monotonic() < deadline, f"no {prefix!r} lines: {lines}"
        line = process.stdout.readline()
        assert line, f"worker exited early: {process.stderr.read() if process.stderr else ''}"
        lines.append(line.strip())
    return lines


@pytest.mark.slow
def test_sigterm_finishes_running_tasks_and_hands_back_the_rest(tmp_path: Path) -> None:
    process, release = _start_drain_worker(tmp_path)
    try:
        _read_until(process, 2, "started")  # concurrency 2: two run, four wait in prefetch
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the drain has begun: running tasks are still waiting
        assert process.poll() is None, "running tasks must be allowed to finish"
        release.touch()
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == ExitCode.OK, err
    assert out.count("finished") == 2
    state = json.loads(out.split("STATE ", 1)[1])
    assert (state["ready"], state["unacked"], state["dead"]) == (4, 0, 0)
    assert state["counts"] == [1, 1, 1, 1], "handed-back deliveries never started: not counted"
    assert "handed back 4 prefetched" in err


@pytest.mark.slow
def test_second_sigterm_stops_at_once_and_hands_back_running_tasks(tmp_path: Path) -> None:
    process, _ = _start_drain_worker(tmp_path)
    try:
        _read_until(process, 2, "started")
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == ExitCode.FORCED_STOP, err
    assert "finished" not in out
    state = json.loads(out.split("STATE ", 1)[1])
    assert (state["ready"], state["unacked"], state["dead"]) == (6, 0, 0), (
        "nothing lost, none acked"
    )
    assert sorted(state["counts"]) == [1, 1, 1, 1, 2, 2], "the two cancelled runs count"
