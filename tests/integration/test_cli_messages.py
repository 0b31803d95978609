"""What the command line says when something is wrong, and the code it exits with.

Each case is one of the observations of a first-time user (issue 16): the
message must say what to change or check, on one line, never a traceback or
a password, and the exit code must be the documented one.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import aioack
from aioack import App
from aioack.cli import ExitCode, main
from aioack.cli.codes import MEANINGS
from aioack.cli.main import COMMANDS
from aioack.results import State
from tests.support import AMQP_URL, REDIS_URL, require_service, unique, wait_until

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.simple:app"
#: A fresh SQLite file for burst runs that must find their queues empty.
_EMPTY_SQLITE = f"sqlite:///{tempfile.mkdtemp(prefix='aioack-cli-')}/empty.db"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# -- the command line itself ---------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "usage", "hint"),
    [
        (["worker", APP, "--brokr", "x"], "usage: aioack worker ", "did you mean --broker?"),
        (["worker", APP, "--concurency=3"], "usage: aioack worker ", "did you mean --concurrency?"),
        (["dlq", "list", "--limt", "3"], "usage: aioack dlq list ", "did you mean --limit?"),
        (["inspect", "--jsn"], "usage: aioack inspect ", "did you mean --json?"),
    ],
    ids=["worker", "worker-equals", "dlq-action", "inspect"],
)
def test_a_typo_after_a_command_shows_that_commands_usage_and_the_closest_option(
    argv: list[str], usage: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(argv, capsys)
    assert code == ExitCode.USAGE
    assert err.startswith(usage), err
    assert hint in _lines(err)[-1]


def test_version_comes_from_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--version"], capsys)
    assert (code, out) == (ExitCode.OK, f"aioack {aioack.__version__}\n")
    # One place: the installed metadata was read from aioack/__init__.py.
    assert importlib.metadata.version("aioack") == aioack.__version__


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ([sys.executable, "-m", "aioack"], "python -m aioack"),
        ([str(Path(sys.executable).with_name("aioack"))], "aioack"),
    ],
    ids=["python-m", "console-script"],
)
def test_the_program_name_follows_how_it_was_invoked(command: list[str], name: str) -> None:
    version = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert version.stdout == f"{name} {aioack.__version__}\n"
    typo = subprocess.run(
        [*command, "worker", APP, "--brokr", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert typo.returncode == ExitCode.USAGE
    assert typo.stderr.startswith(f"usage: {name} worker "), typo.stderr
    assert "python -m aioack" not in typo.stderr if name == "aioack" else True


def test_help_lists_every_command_and_every_exit_code_with_its_meaning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(["--help"], capsys)
    assert code == ExitCode.OK
    for module in COMMANDS:
        name = module.__name__.rsplit(".", 1)[1]
        assert re.search(rf"^\s+{name}\s+\S", out, re.MULTILINE), f"{name}: no summary"
    for exit_code in ExitCode:
        line = rf"^\s+{exit_code.value}\s+{exit_code.name}\s+{re.escape(MEANINGS[exit_code])}$"
        assert re.search(line, out, re.MULTILINE), f"{exit_code.name}: no meaning in --help"


def test_docs_list_every_exit_code() -> None:
    table = (ROOT / "docs" / "cli.md").read_text()
    for exit_code in ExitCode:
        assert f"| {exit_code.value} | `{exit_code.name}` |" in table, exit_code.name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-c", "0"], "argument -c/--concurrency: 0 is out of range: give a whole number from 1"),
        (["-c", "x"], "argument -c/--concurrency: 'x' is not a whole number"),
        (["--prefetch", "0"], "argument --prefetch: 0 is out of range"),
        (["--shutdown-timeout", "-1"], "argument --shutdown-timeout: -1 seconds: give a finite"),
        (["--shutdown-timeout", "nan"], "argument --shutdown-timeout: nan seconds: give a finite"),
        (["--metrics-port", "70000"], "argument --metrics-port: 70000 is out of range"),
    ],
    ids=["zero-concurrency", "word", "zero-prefetch", "negative-grace", "nan-grace", "port"],
)
def test_a_bad_number_is_one_line_about_its_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["worker", APP, *argv, "--burst"], capsys)
    assert code == ExitCode.USAGE
    last = _lines(err)[-1]
    assert last.startswith(f"aioack worker: error: {message}"), last
    assert "prefetch" not in last or "--prefetch" in argv
    assert "pydantic" not in err


def test_a_queue_no_task_uses_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        ["worker", APP, "--broker", _EMPTY_SQLITE, "-Q", "simpel", "--burst"], capsys
    )
    assert code == ExitCode.OK
    warned = [line for line in _lines(err) if "WARNING" in line]
    assert len(warned) == 1 and "-Q simpel: no task of tests.apps.simple:app uses" in warned[0]
    assert "did you mean simple?" in warned[0]
    _, _, err = _run(["worker", APP, "--broker", _EMPTY_SQLITE, "-Q", "simple", "--burst"], capsys)
    assert "WARNING" not in err


# -- what a broker refuses -----------------------------------------------------


def _one_error_line(err: str) -> str:
    """The run's output is exactly one line, an ERROR, with no traceback."""
    lines = _lines(err)
    assert len(lines) == 1, err
    assert "ERROR aioack.cli:" in lines[0] and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("option", ["--broker", "--results"])
def test_a_redis_database_that_does_not_exist_is_a_configuration_error(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require_service(REDIS_URL)
    url = REDIS_URL.rsplit("/", 1)[0] + "/99"
    code, _, err = _run(["worker", APP, option, url, "--burst"], capsys)
    assert code == ExitCode.CONFIG_ERROR
    line = _one_error_line(err)
    assert "Redis has no database 99" in line and "redis://127.0.0.1:6379/0" in line


@pytest.mark.parametrize("option", ["--broker", "--results"])
def test_a_refused_redis_login_names_the_url_and_never_the_password(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require_service(REDIS_URL)
    url = REDIS_URL.replace("redis://", "redis://someone:s3cret-pw@")
    code, _, err = _run(["worker", APP, option, url, "--burst"], capsys)
    assert code == ExitCode.CONFIG_ERROR
    line = _one_error_line(err)
    assert "refused the login" in line and "check the user/password in the URL" in line
    assert "s3cret-pw" not in err


def test_an_unreachable_redis_says_what_to_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["worker", APP, "--broker", "redis://127.0.0.1:1/0", "--burst"], capsys)
    assert code == ExitCode.BROKER_UNAVAILABLE
    line = _one_error_line(err)
    assert "cannot reach the Redis broker at 127.0.0.1:1" in line
    assert "is the server running there?" in line and "firewall" in line


def _amqp(user_pass: str, vhost: str = "") -> str:
    return AMQP_URL.replace("guest:guest@", f"{user_pass}@").rstrip("/") + "/" + vhost


def test_a_refused_amqp_login_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_service(AMQP_URL)
    code, _, err = _run(["worker", APP, "--broker", _amqp("guest:s3cret-pw"), "--burst"], capsys)
    assert code == ExitCode.CONFIG_ERROR
    line = _one_error_line(err)
    assert "refused the login of user 'guest'" in line
    assert "check the user/password in the URL" in line
    assert "s3cret-pw" not in err


def test_an_amqp_vhost_that_does_not_exist_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_service(AMQP_URL)
    vhost = unique("no-such-vhost")
    code, _, err = _run(["worker", APP, "--broker", _amqp("guest:guest", vhost), "--burst"], capsys)
    assert code == ExitCode.CONFIG_ERROR
    assert f"would not open virtual host {vhost!r}" in _one_error_line(err)


def test_an_unreachable_amqp_server_is_one_line_without_the_clients_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "amqp://guest:guest@127.0.0.1:1/"
    code, _, err = _run(["worker", APP, "--broker", url, "--burst"], capsys)
    assert code == ExitCode.BROKER_UNAVAILABLE
    line = _one_error_line(err)  # no aiormq transport error, no "Reconnecting after"
    assert "cannot reach RabbitMQ at 127.0.0.1:1" in line and "is the server running" in line


def test_a_misspelled_broker_option_is_one_clean_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = "redis://127.0.0.1:6379/0?visibility_timout=5"
    code, _, err = _run(["worker", APP, "--broker", url, "--burst"], capsys)
    assert code == ExitCode.CONFIG_ERROR
    line = _one_error_line(err)
    assert line.endswith(
        "unknown Redis broker option 'visibility_timout' (did you mean 'visibility_timeout')"
    )


# -- what a worker says about its tasks ----------------------------------------


def test_the_dead_letter_line_gives_a_command_that_finds_the_letter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    sent_id = asyncio.run(_send_one(url))
    code = main(["worker", "tests.apps.letters:app", "--broker", url, "--burst"])
    err = capsys.readouterr().err
    assert code == ExitCode.OK
    [line] = [line for line in _lines(err) if "dead-lettered" in line]
    found = re.search(r"kept in the dead letters of queue letters: (python -m aioack .*)$", line)
    assert found, line
    command = found.group(1).split()[3:]  # after "python -m aioack"
    assert command == ["dlq", "list", "[MODULE:APP]", "-Q", "letters", "--task", "mail.send"]
    command[2] = "tests.apps.letters:app"
    code = main([*command, "--broker", url, "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    assert [letter["message_id"] for letter in listed] == [sent_id]


async def _send_one(url: str) -> str:
    producer = App(url)
    send = producer.task(name="mail.send", queue="letters")(_stub)
    async with producer:
        return (await send.delay(1)).id


async def _stub(n: int) -> None:
    raise AssertionError("runs in the worker only")


@pytest.mark.slow
async def test_a_shutdown_cut_by_the_deadline_exits_10_and_the_run_reads_retry(
    tmp_path: Path,
) -> None:
    broker_url, results_url = f"sqlite:///{tmp_path}/q.db", f"sqlite:///{tmp_path}/r.db"
    started = tmp_path / "started"
    producer = App(broker_url, results=results_url)
    forever = producer.task(name="stuck.forever", queue="stuck")(_stub_forever)
    async with producer:
        result = await forever.delay()
        worker = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "aioack", "worker", "tests.apps.stuck:app"),
            *("--broker", broker_url, "--results", results_url, "--shutdown-timeout", "0.5"),
            env={**os.environ, "AIOACK_TEST_STARTED": str(started)},
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_until(
                lambda: started.exists() or worker.returncode is not None,
                60,
                message="the task to start in the worker process",
            )
            assert worker.returncode is None, "the worker exited before the task started"
            worker.send_signal(signal.SIGTERM)
            _, raw_err = await asyncio.wait_for(worker.communicate(), 60)
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        err = raw_err.decode()
        assert worker.returncode == ExitCode.SHUTDOWN_TIMEOUT, err
        assert "shutdown_timeout ran out" in err
        record = await result.record()
        assert record is not None and record.state is State.RETRY, record
        assert record.error_type == "shutdown"
        assert (await producer.broker.stats("stuck")).ready == 1, "handed back, not lost"


async def _stub_forever() -> None:
    raise AssertionError("runs in the worker only")
