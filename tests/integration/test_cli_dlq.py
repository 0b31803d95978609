"""``python -m aioack dlq``: each action, what it leaves on the broker, and each bad input's exit code."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioack.brokers import Broker, DeadLetter, broker_from_url
from aioack.cli import ExitCode, main
from aioack.message import Message
from tests.apps import letters as letters_app
from tests.conftest import broker_url
from tests.support import unique

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "smtp\x1b[2J down\x1b]0;owned\x07 [red]forged[/red]\u202e\nmore"


@pytest.fixture(autouse=True)
def _restore_letters_app() -> Iterator[None]:
    """main() points the imported App at --broker; undo it for later tests."""
    broker = letters_app.app.broker
    yield
    letters_app.app.use_broker(broker)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/dlq.db"


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _on(url: str, action: str, queue: str, *args: object) -> object:
    broker = broker_from_url(url)
    await broker.connect()
    try:
        return await getattr(broker, action)(queue, *args)
    finally:
        await broker.aclose()


def _fill(url: str, queue: str) -> None:
    """Dead-letter a known set on ``queue``: 3 mail.send, 2 report.build, 1 junk, 1 old."""

    async def fill() -> None:
        broker = broker_from_url(url)
        await broker.connect()
        try:
            await broker.declare([queue])
            for task, count in (("mail.send", 3), ("report.build", 2)):
                for n in range(count):
                    body = Message(id=f"{task}-{n}", task=task, args=[n], attempt=3).encode()
                    await broker.add_dead_letter(
                        DeadLetter(
                            queue=queue,
                            reason="failed",
                            body=body,
                            error=f"ValueError: {HOSTILE}",
                            traceback=f"Traceback (most recent call last):\n  {HOSTILE}\n",
                            attempt=3,
                            message_id=f"{task}-{n}",
                        )
                    )
            await broker.add_dead_letter(
                DeadLetter(queue=queue, reason="malformed", body=b"\xff\x00junk", detail="not JSON")
            )
            old = Message(id="old", task="mail.send", args=[9]).encode()
            await broker.add_dead_letter(
                DeadLetter(
                    queue=queue,
                    reason="timeout",
                    body=old,
                    message_id="old",
                    dead_lettered_at=time.time() - 3 * 86400,
                )
            )
        finally:
            await broker.aclose()

    asyncio.run(fill())


def _letters(url: str, queue: str) -> list[DeadLetter]:
    return _run(_on(url, "dead_letters", queue, 1000))  # type: ignore[return-value]


def _ready(url: str, queue: str) -> int:
    return _run(_on(url, "stats", queue)).ready  # type: ignore[attr-defined,no-any-return]


def _list_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["dlq", "list", *argv, "--json"]) == ExitCode.OK
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


# -- list ----------------------------------------------------------------------


def test_list_shows_reason_task_age_and_error_in_a_table(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(db, "q")
    assert main(["dlq", "list", "--broker", db, "-Q", "q"]) == ExitCode.OK
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "AGE", "REASON", "TASK", "ATTEMPT", "ERROR"]
    assert sum("mail.send" in row and "failed" in row for row in rows) == 3
    assert any("malformed" in row and "not JSON" in row for row in rows)
    assert any("3d" in row and "timeout" in row for row in rows)
    assert "7 dead letters shown" in out
    # Hostile text is escaped: no escape sequence, no markup obeyed, no bidi override.
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "smtp\\x1b[2J down" in out and "[red]forged[/red]" in out


def test_list_json_and_filters_match_the_broker(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(db, "q")
    everything = _list_json(capsys, "--broker", db, "-Q", "q")
    assert [d["id"] for d in everything] == [letter.id for letter in _letters(db, "q")]
    assert {d["task"] for d in everything} == {"mail.send", "report.build", None}
    sends = _list_json(capsys, "--broker", db, "-Q", "q", "--task", "mail.send")
    assert sorted(d["message_id"] for d in sends) == [
        "mail.send-0",
        "mail.send-1",
        "mail.send-2",
        "old",
    ]  # type: ignore[type-var]
    both = _list_json(
        capsys, "--broker", db, "-Q", "q", "--reason", "malformed", "--reason", "timeout"
    )
    assert sorted(d["reason"] for d in both) == ["malformed", "timeout"]  # type: ignore[type-var]
    old = _list_json(capsys, "--broker", db, "-Q", "q", "--older-than", "2d")
    assert [d["message_id"] for d in old] == ["old"]
    young = _list_json(capsys, "--broker", db, "-Q", "q", "--newer-than", "1h", "--limit", "2")
    assert len(young) == 2


def test_list_with_an_app_reads_its_queues(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(db, "letters")
    found = _list_json(capsys, "tests.apps.letters:app", "--broker", db)
    assert len(found) == 7 and {d["queue"] for d in found} == {"letters"}


# -- show ----------------------------------------------------------------------


def test_show_prints_the_letter_with_its_traceback_and_body(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(db, "q")
    letter = next(d for d in _letters(db, "q") if d.message_id == "mail.send-1")
    assert letter.id is not None
    capsys.readouterr()
    assert main(["dlq", "show", "--broker", db, "-Q", "q", letter.id]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "reason:" in out and "mail.send" in out and "Traceback (most recent call last)" in out
    assert '"task": "mail.send"' in out  # the body, indented
    assert "\x1b" not in out and "\\x1b" in out  # the hostile text, escaped
    assert main(["dlq", "show", "--broker", db, "-Q", "q", letter.id, "--json"]) == ExitCode.OK
    shown = json.loads(capsys.readouterr().out)
    assert base64.b64decode(shown["body_base64"]) == letter.body
    assert shown["traceback"] == letter.traceback


def test_show_of_a_body_that_is_no_json_escapes_it(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(db, "q")
    junk = next(d for d in _letters(db, "q") if d.reason == "malformed")
    assert junk.id is not None
    capsys.readouterr()
    assert main(["dlq", "show", "--broker", db, "-Q", "q", junk.id]) == ExitCode.OK
    assert "\\xff\\x00junk" in capsys.readouterr().out


# -- replay --------------------------------------------------------------------


def test_replay_by_task_puts_copies_back_and_dry_run_changes_nothing(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(db, "q")
    argv = ["dlq", "replay", "--broker", db, "-Q", "q", "--task", "report.build"]
    assert main([*argv, "--dry-run"]) == ExitCode.OK
    assert "would replay 2 dead letters" in capsys.readouterr().out
    assert (len(_letters(db, "q")), _ready(db, "q")) == (7, 0)
    assert main(argv) == ExitCode.OK
    assert "replayed 2 dead letters of q" in capsys.readouterr().out
    assert (len(_letters(db, "q")), _ready(db, "q")) == (5, 2)
    assert main(["dlq", "replay", "--broker", db, "-Q", "q", "--all"]) == ExitCode.OK
    assert (len(_letters(db, "q")), _ready(db, "q")) == (0, 7)


def test_replay_by_id_of_a_letter_that_does_not_exist_does_nothing_and_exits_7(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(db, "q")
    real = _letters(db, "q")[0].id
    assert real is not None
    code = main(["dlq", "replay", "--broker", db, "-Q", "q", "--id", real, "--id", "999"])
    assert code == ExitCode.NOT_FOUND
    assert "no dead letter with id 999" in capsys.readouterr().err
    assert (len(_letters(db, "q")), _ready(db, "q")) == (7, 0)  # not even the real one


def test_replay_of_many_shows_progress(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def many() -> None:
        broker = broker_from_url(db)
        await broker.connect()
        for n in range(150):
            body = Message(id=f"m{n}", task="t").encode()
            await broker.add_dead_letter(DeadLetter(queue="q", reason="failed", body=body))
        await broker.aclose()

    asyncio.run(many())
    assert main(["dlq", "replay", "--broker", db, "-Q", "q", "--all", "--batch-size", "40"]) == 0
    captured = capsys.readouterr()
    assert "replaying q: 150 replayed" in captured.err and "150/150" in captured.err
    assert _ready(db, "q") == 150


def test_replay_then_a_worker_runs_the_tasks_in_real_processes(tmp_path: Path) -> None:
    url, marks = f"sqlite:///{tmp_path}/e2e.db", tmp_path / "ran"

    async def enqueue() -> None:
        letters_app.app.use_broker(url)
        for n in range(3):
            await letters_app.send.delay(n)
        await letters_app.build.delay(0)
        await letters_app.app.aclose()

    def aioack(*argv: str, fixed: bool = False) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "AIOACK_TEST_FIXED": str(marks) if fixed else ""}
        return subprocess.run(
            [sys.executable, "-m", "aioack", *argv],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )

    asyncio.run(enqueue())
    app = ["tests.apps.letters:app", "--broker", url]
    assert aioack("worker", *app, "--burst").returncode == 0
    assert len(_letters(url, "letters")) == 4
    replay = aioack("dlq", "replay", *app, "--task", "mail.send")
    assert replay.returncode == 0, replay.stderr
    assert aioack("worker", *app, "--burst", fixed=True).returncode == 0
    # Each replayed task ran once, as attempt 1, delivery 1; the other letter stayed.
    assert sorted(marks.read_text().splitlines()) == [f"mail.send {n} 1 1" for n in range(3)]
    assert [d.task for d in _letters(url, "letters")] == ["report.build"]


# -- purge ---------------------------------------------------------------------


def test_purge_asks_first_and_does_nothing_unless_told_yes(
    db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(db, "q")
    argv = ["dlq", "purge", "--broker", db, "-Q", "q", "--reason", "failed"]
    for answer in ("n\n", "", "whatever\n"):  # no, end of input, anything else
        monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
        assert main(argv) == ExitCode.ABORTED
        assert "purge 5 dead letters of q" in capsys.readouterr().err
        assert len(_letters(db, "q")) == 7
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert main(argv) == ExitCode.OK
    assert {d.reason for d in _letters(db, "q")} == {"malformed", "timeout"}
    assert main(["dlq", "purge", "--broker", db, "-Q", "q", "--all", "--yes"]) == ExitCode.OK
    assert "purged 2 dead letters of q" in capsys.readouterr().out
    assert _letters(db, "q") == [] and _ready(db, "q") == 0


def test_purge_dry_run_and_nothing_to_purge_ask_nothing(
    db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(db, "q")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # a prompt would read EOF: exit 8
    base = ["dlq", "purge", "--broker", db, "-Q", "q"]
    assert main([*base, "--all", "--dry-run"]) == ExitCode.OK
    assert "would purge 7 dead letters" in capsys.readouterr().out
    assert main([*base, "--task", "no.such.task"]) == ExitCode.OK
    assert len(_letters(db, "q")) == 7


# -- on every broker that other processes share ----------------------------------------


@pytest.mark.parametrize("kind", ["redis", "rabbitmq", "sqlite"])
def test_list_replay_purge_by_url_on_each_broker(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url, queue = broker_url(kind), unique("dlq")
    _fill(url, queue)
    try:
        assert len(_list_json(capsys, "--broker", url, "-Q", queue)) == 7
        replay = ["dlq", "replay", "--broker", url, "-Q", queue, "--task", "mail.send"]
        assert main(replay) == ExitCode.OK
        assert (len(_letters(url, queue)), _ready(url, queue)) == (3, 4)
        purge = ["dlq", "purge", "--broker", url, "-Q", queue, "--all", "--yes"]
        assert main(purge) == ExitCode.OK
        assert _letters(url, queue) == []
    finally:
        _run(_delete(url, queue))


async def _delete(url: str, queue: str) -> None:
    broker: Broker = broker_from_url(url)
    await broker.connect()
    await broker.delete([queue])
    await broker.aclose()


# -- bad input -----------------------------------------------------------------


def test_help_lists_dlq_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "aioack dlq list" in out and "ABORTED" in out  # one example per command
    assert main(["dlq", "--help"]) == ExitCode.OK
    assert "aioack dlq replay" in capsys.readouterr().out
    for action in ("list", "show", "replay", "purge"):
        assert main(["dlq", action, "--help"]) == ExitCode.OK
        assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["dlq"], ExitCode.USAGE, "required"),
        (["dlq", "list"], ExitCode.USAGE, "name the queue"),
        (["dlq", "list", "-Q", "nope"], ExitCode.NOT_FOUND, "unknown queue 'nope'"),
        (["dlq", "show", "-Q", "q", "999"], ExitCode.NOT_FOUND, "no dead letter with id '999'"),
        (["dlq", "show", "-Q", "q"], ExitCode.USAGE, "ID"),
        (["dlq", "replay", "-Q", "q"], ExitCode.USAGE, "say which letters to replay"),
        (["dlq", "purge", "-Q", "q", "--yes"], ExitCode.USAGE, "say which letters to purge"),
        (["dlq", "replay", "-Q", "q", "--all", "--task", "t"], ExitCode.USAGE, "not both"),
        (["dlq", "replay", "-Q", "q", "--id", "999"], ExitCode.NOT_FOUND, "nothing was done"),
        (["dlq", "purge", "-Q", "q", "--id", "999", "--yes"], ExitCode.NOT_FOUND, "999"),
        (["dlq", "list", "-Q", "q", "--reason", "faild"], ExitCode.USAGE, "did you mean 'failed'"),
        (["dlq", "list", "-Q", "q", "--older-than", "3 weeks"], ExitCode.USAGE, "not an age"),
        (["dlq", "list", "-Q", "q", "--older-than", "-5"], ExitCode.USAGE, "not an age"),
        (["dlq", "list", "-Q", "q", "--limit", "0"], ExitCode.USAGE, "whole number"),
        (["dlq", "list", "-Q", "q", "--task", "a\x1bb"], ExitCode.USAGE, "printable"),
        (["dlq", "list", "-Q", "q", "--id", ""], ExitCode.USAGE, "printable"),
        (["dlq", "replay", "-Q", "q", "--all", "--batch-size", "5000"], ExitCode.USAGE, "1-1000"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_input_says_what_and_exits_with_its_code(
    db: str, capsys: pytest.CaptureFixture[str], argv: list[str], code: ExitCode, says: str
) -> None:
    _fill(db, "q")
    assert main([*argv, "--broker", db] if len(argv) > 1 else argv) == code
    assert says in capsys.readouterr().err
    assert (len(_letters(db, "q")), _ready(db, "q")) == (7, 0)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--broker", "memory://", "-Q", "q"], ExitCode.CONFIG_ERROR),
        (["--broker", "kafka://x", "-Q", "q"], ExitCode.CONFIG_ERROR),
        (["--broker", "redis://127.0.0.1:1/0", "-Q", "q"], ExitCode.BROKER_UNAVAILABLE),
        (["no.such.module:app"], ExitCode.APP_NOT_FOUND),
    ],
    ids=["memory-refused", "bad-scheme", "broker-down", "no-app"],
)
def test_broker_and_app_errors_have_their_exit_codes(argv: list[str], code: ExitCode) -> None:
    assert main(["dlq", "list", *argv]) == code
