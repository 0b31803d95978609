"""docs/troubleshooting.md quotes messages aioack really prints.

Each message a row opens with is cut at its variable parts (``...``,
quotes, brackets); the pieces must all be in one string of the
package (its placeholders as ``...``), in that order. A reworded message, or one
that is gone, fails here until the page follows. Rows marked ``(Python)``
or ``(redis-py)`` quote those instead; a lone name must be an aioack error.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

import aioack
from aioack.brokers.deadletters import REASONS

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "troubleshooting.md"
EXTERNAL = ("(Python)", "(redis-py)")
#: Values the page shows where the code has a placeholder (``what=``, an action).
FILLED_IN = re.compile(r"\b(Redis broker|broker|connect)\b")


@cache
def corpus() -> tuple[str, ...]:
    """Every string constant of the package, an f-string's fields as ``...``."""
    texts = []
    for path in (ROOT / "aioack").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                texts.append(
                    "".join(v.value if isinstance(v, ast.Constant) else "..." for v in node.values)
                )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
    return tuple(texts)


def quoted_messages() -> list[str]:
    found = []
    for line in PAGE.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        if any(mark in first for mark in EXTERNAL):
            continue
        # The message the row opens with (``Error``: ``text`` counts as one); a
        # row opening with prose describes a symptom that prints nothing.
        opening = re.match(r"\s*((?:`[^`]+`(?::\s*)?)+)", first)
        if opening is not None:
            found.extend(re.findall(r"`([^`]+)`", opening.group(1)))
    return found


def pieces(message: str) -> list[str]:
    cut = re.split(r"\.\.\.|[()'\"]|%[sdr]", FILLED_IN.sub("...", message))
    cores = (piece.strip(" :;,.=") for piece in cut)
    return [core for core in cores if len(core) >= 3]


def test_the_page_quotes_enough_messages_to_mean_something() -> None:
    assert len(quoted_messages()) >= 40


@pytest.mark.parametrize("message", quoted_messages())
def test_a_quoted_message_is_one_aioack_prints(message: str) -> None:
    if re.fullmatch(r"[A-Z][A-Za-z]+", message):
        assert hasattr(aioack, message), f"{message} is not an aioack error"
        return
    reason = re.fullmatch(r"dead-lettered: (\w+)", message)
    if reason is not None:
        assert reason.group(1) in REASONS
        return
    wanted = pieces(message)
    assert wanted, f"{message!r}: nothing to look for"
    assert any(_in_order(wanted, text) for text in corpus()), f"{message!r} is not in the package"


def _in_order(wanted: list[str], text: str) -> bool:
    """All of ``wanted`` in one string of the package, in this order."""
    at = 0
    for piece in wanted:
        at = text.find(piece, at)
        if at < 0:
            return False
        at += len(piece)
    return True
