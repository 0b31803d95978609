"""``python -m aioack dlq`` over letters whose stored time nobody should trust, on each
broker other processes share: ``list`` (table and JSON) and ``show`` print them,
with the time unknown, and the JSON is JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from aioack.cli import ExitCode, main
from tests.contract.test_dead_letter_times import HOSTILE_TIMES, SQLITE_TIMES, STORES
from tests.integration.dlq_support import KINDS, connected, deleted_after, url_for
from tests.support import unique


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is no JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("kind", KINDS)
def test_letters_with_hostile_times_list_and_show_as_unknown(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, queue = url_for(kind, tmp_path), unique("times")
    times = SQLITE_TIMES if kind == "sqlite" else HOSTILE_TIMES

    async def store() -> None:
        broker = await connected(url)
        try:
            await broker.declare([queue])
            for at in times:
                await STORES[kind](broker, queue, at)
        finally:
            await broker.aclose()

    asyncio.run(store())
    where = ["--broker", url, "-Q", queue]
    with deleted_after(url, queue):
        assert main(["dlq", "list", *where]) == ExitCode.OK
        table = capsys.readouterr().out
        assert table.count("unknown") == len(times), table
        assert main(["dlq", "list", *where, "--json"]) == ExitCode.OK
        listed = _strict_json(capsys.readouterr().out)
        assert [(d["dead_lettered_at"], d["age_s"]) for d in listed] == [(None, None)] * len(times)
        for letter in listed:
            assert main(["dlq", "show", *where, letter["id"]]) == ExitCode.OK
            assert "unknown (the broker holds no readable time" in capsys.readouterr().out
            assert main(["dlq", "show", *where, letter["id"], "--json"]) == ExitCode.OK
            assert _strict_json(capsys.readouterr().out)["dead_lettered_at"] is None
        # No age: `--older-than` takes none of them, so no age-based purge removes them.
        assert main(["dlq", "purge", *where, "--older-than", "0", "--yes"]) == ExitCode.OK
        assert "purged 0 dead letters" in capsys.readouterr().out
