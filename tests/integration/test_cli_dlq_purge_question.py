"""``python -m aioack dlq purge`` and its question, on each broker other processes share:
it removes the letters it counted and no other, and Ctrl-C or end of input at
the question ends it at once, with nothing removed."""

from __future__ import annotations

import asyncio
import io
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from aioack.brokers import LetterFilter
from aioack.cli import ExitCode, main
from tests.integration.dlq_support import (
    KINDS,
    connected,
    dead_letter,
    delete,
    deleted_after,
    held,
    url_for,
)
from tests.support import unique

ROOT = Path(__file__).resolve().parents[2]


# -- a purge removes what it counted ------------------------------------------------


class _Meanwhile(io.StringIO):
    """stdin that answers yes, after ``act`` ran while the question waited."""

    def __init__(self, act: Callable[[], None]) -> None:
        super().__init__("y\n")
        self._act = act

    def readline(self, size: int | None = -1) -> str:
        self._act()
        return super().readline(size)


@pytest.mark.parametrize("kind", KINDS)
def test_a_purge_removes_only_letters_it_counted_not_those_dead_lettered_meanwhile(
    kind: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, queue = url_for(kind, tmp_path), unique("purge")
    asyncio.run(dead_letter(url, queue, ["a", "b"]))

    async def others() -> None:
        # Another operator replays a; a task fails for good as c.
        broker = await connected(url)
        try:
            [a] = await broker.dead_letters(queue, where=LetterFilter(tasks=["t"]), limit=1)
            assert a.id is not None and a.message_id == "a"
            assert await broker.replay_dead_letters(queue, LetterFilter(ids=[a.id])) == 1
        finally:
            await broker.aclose()
        await dead_letter(url, queue, ["c"])

    with deleted_after(url, queue):
        monkeypatch.setattr(sys, "stdin", _Meanwhile(lambda: asyncio.run(others())))
        assert main(["dlq", "purge", "--broker", url, "-Q", queue, "--all"]) == ExitCode.OK
        captured = capsys.readouterr()
        assert f"purge 2 dead letters of {queue}" in captured.err
        assert f"purged 1 dead letter of {queue}" in captured.out
        assert "1 of those counted was gone already" in captured.out
        assert asyncio.run(held(url, queue)) == (["a"], ["c"])


# -- Ctrl-C or end of input at the question ------------------------------------------


@pytest.mark.parametrize("how", ["sigint", "eof"])
@pytest.mark.parametrize("kind", KINDS)
async def test_ctrl_c_or_end_of_input_at_the_question_exits_8_at_once_purging_nothing(
    kind: str, how: str, tmp_path: Path
) -> None:
    url, queue = url_for(kind, tmp_path), unique("ask")
    await dead_letter(url, queue, ["a", "b"])
    purge = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "aioack", "dlq", "purge", "--broker", url, "-Q", queue, "--all"),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert purge.stdin is not None and purge.stderr is not None
    try:
        asked = await asyncio.wait_for(purge.stderr.readuntil(b"[y/N] "), 30)
        assert b"purge 2 dead letters" in asked
        if how == "sigint":
            purge.send_signal(signal.SIGINT)
        else:
            purge.stdin.close()
        # At once: not when someone presses Enter.
        code = await asyncio.wait_for(purge.wait(), 10)
        err = (await purge.stderr.read()).decode()
    finally:
        if purge.returncode is None:
            purge.kill()
            await purge.wait()
    try:
        assert code == ExitCode.ABORTED, err
        assert "nothing purged" in err and "Traceback" not in err
        assert (await held(url, queue))[1] == ["a", "b"]
    finally:
        await delete(url, queue)
