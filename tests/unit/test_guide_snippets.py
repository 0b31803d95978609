"""The Python snippets of the guides written for users coming from elsewhere parse,
and every name they import from aioack exists.

The migration guide shows Celery code beside aioack code: both must be
real Python, and an aioack name that is renamed or gone fails here.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["celery-migration.md", "deployment.md", "troubleshooting.md", "configuration.md"]


def _as_code(block: str) -> str:
    """An interactive session's input lines (``>>>``, ``...``), without its output."""
    if ">>> " not in block:
        return block
    lines = (line for line in block.splitlines() if line.startswith((">>>", "...")))
    return "\n".join(line[4:] for line in lines)


def snippets() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = (ROOT / "docs" / page).read_text()
        for block in re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S):
            found.append((page, _as_code(block)))
    return found


@pytest.mark.parametrize(("page", "code"), snippets(), ids=lambda v: v[:40])
def test_a_snippet_parses_and_its_aioack_imports_exist(page: str, code: str) -> None:
    tree = ast.parse(code)  # a SyntaxError fails the test
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aioack"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                # dir(): a lazily made attribute (the Django integration's app) is listed
                # without being made, which would need Django's settings.
                assert alias.name in dir(module), f"{page}: {node.module}.{alias.name}"


def test_there_are_snippets_to_check() -> None:
    assert len(snippets()) >= 10
