"""``python -m aioack revoke``: what it records, and its exit codes."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from aioack.cli.codes import ExitCode
from aioack.cli.main import main
from aioack.results.sqlite import SQLiteResultBackend

pytestmark = pytest.mark.integration


def _recorded(url: str) -> dict[str, bool]:
    async def read() -> dict[str, bool]:
        backend = SQLiteResultBackend(url)
        try:
            found, _ = await backend.revocations_after(None, 0)
        finally:
            await backend.aclose()
        return {r.task_id: r.terminate for r in found}

    return asyncio.run(read())


def test_revoke_records_the_ids_for_every_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/results.db"
    assert main(["revoke", "--results", url, "id-1", "id-2"]) == ExitCode.OK
    assert main(["revoke", "--results", url, "--terminate", "--expires", "60", "id-3"]) == 0
    assert _recorded(url) == {"id-1": False, "id-2": False, "id-3": True}


def test_revoke_reads_ids_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/results.db"
    monkeypatch.setattr("sys.stdin", io.StringIO("a-1\n\n  b-2  \n"))
    assert main(["revoke", "--results", url, "-"]) == ExitCode.OK
    assert _recorded(url) == {"a-1": False, "b-2": False}


def test_revoke_refuses_bad_input_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/results.db"
    assert main(["revoke", "--results", url, "ok", "bad\x07id"]) == ExitCode.USAGE
    assert main(["revoke", "--results", url, "--expires", "0", "ok"]) == ExitCode.USAGE
    assert _recorded(url) == {}
    monkeypatch.delenv("AIOACK_RESULTS_URL", raising=False)
    assert main(["revoke", "some-id"]) == ExitCode.CONFIG_ERROR  # no result backend
    unreachable = ["revoke", "--results", "redis://127.0.0.1:1/0", "some-id"]
    assert main(unreachable) == ExitCode.BROKER_UNAVAILABLE
