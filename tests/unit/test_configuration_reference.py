"""docs/configuration.md lists every setting the code has, and only those.

Each section of the page is compared with where its settings live: the
fields of an options model, the parameters of a function, the flags a
command's ``--help`` lists, the ``AIOACK_*`` names the package reads. A new
option without a row fails here, as does a row for an option that is gone,
and a default written as a literal that is not the code's default.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from aioack import App
from aioack.brokers.rabbitmq.options import RabbitMQOptions
from aioack.brokers.redis.options import RedisOptions
from aioack.brokers.sqlite.options import SQLiteOptions
from aioack.cli.main import main
from aioack.integrations.django import SETTINGS_KEYS
from aioack.integrations.fastapi import aioack_lifespan
from aioack.limits import QueueLimit
from aioack.options import TaskOptions
from aioack.results.memory import MemoryResultBackend
from aioack.results.redis.backend import RedisResultOptions
from aioack.results.sqlite.backend import SQLiteResultOptions
from aioack.task import Task
from aioack.urls import REDIS_CLIENT_QUERY
from aioack.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"

#: A table row: its first cell (a name in backticks) and its second (the default).
ROW = re.compile(r"^\|\s*`([^`]+)`[^|]*\|([^|]*)\|", re.M)


def sections() -> dict[str, str]:
    """Heading text -> the text under it (up to the next heading of any level)."""
    parts = re.split(r"^#{2,3} (.+)$", PAGE.read_text(), flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def rows(heading: str) -> dict[str, str]:
    """First-column name -> default cell, for every table row under ``heading``."""
    text = sections()[heading]
    found = {}
    for name, default in ROW.findall(text):
        found[name] = default.strip()
    return found


def fields(model: type[BaseModel]) -> dict[str, Any]:
    return {name: field.default for name, field in model.model_fields.items()}


def parameters(fn: Callable[..., Any], *, skip: tuple[str, ...] = ("self",)) -> dict[str, Any]:
    found = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name in skip:
            continue
        key = f"**{name}" if param.kind is param.VAR_KEYWORD else name
        found[key] = PydanticUndefined if param.default is param.empty else param.default
    return found


def memory_result_options() -> dict[str, Any]:
    # The memory backend's model is private: its fields are what from_url accepts.
    backend = MemoryResultBackend.from_url("memory://")
    return {"result_expires": backend.result_expires_s}


#: Page section -> the settings the code has there (name -> default).
EXPECTED: dict[str, Callable[[], dict[str, Any]]] = {
    "App options": lambda: parameters(App.__init__),
    "Task options": lambda: fields(TaskOptions),
    "Call options": lambda: parameters(Task.apply_async),
    "Queue limits": lambda: fields(QueueLimit),
    "Periodic schedule options": lambda: parameters(App.periodic, skip=("self", "task")),
    "Worker options": lambda: {**fields(WorkerSettings), **parameters(App.worker)},
    "FastAPI lifespan options": lambda: parameters(aioack_lifespan),
    # Each key's default is the App option's: no literal of its own to compare.
    "Django settings": lambda: dict.fromkeys(SETTINGS_KEYS, PydanticUndefined),
    "SQLite": lambda: fields(SQLiteOptions),
    "RabbitMQ": lambda: fields(RabbitMQOptions),
    "SQLite results": lambda: fields(SQLiteResultOptions),
    "Redis results": lambda: fields(RedisResultOptions),
    "memory results": memory_result_options,
}


@pytest.mark.parametrize("heading", sorted(EXPECTED))
def test_every_setting_has_a_row_and_every_row_a_setting(heading: str) -> None:
    documented = set(rows(heading))
    actual = set(EXPECTED[heading]())
    assert actual - documented == set(), f"{heading}: settings without a row"
    assert documented - actual == set(), f"{heading}: rows for settings that do not exist"


def test_redis_rows_are_the_broker_options_and_redis_pys_own_parameters() -> None:
    documented = set(rows("Redis"))
    assert documented == set(fields(RedisOptions)) | REDIS_CLIENT_QUERY


@pytest.mark.parametrize("heading", sorted(EXPECTED))
def test_a_literal_default_is_the_codes_default(heading: str) -> None:
    actual = EXPECTED[heading]()
    for name, cell in rows(heading).items():
        literal = re.match(r"`([^`]*)`", cell)
        if literal is None or actual.get(name, PydanticUndefined) is PydanticUndefined:
            continue  # prose ("the tasks' queues"), or a required setting
        written = _value(literal.group(1))
        if written is _PROSE:
            continue
        assert written == actual[name], f"{heading}: {name} default {cell!r} != {actual[name]!r}"


def test_the_redis_defaults_are_the_codes() -> None:
    actual = fields(RedisOptions)
    for name, cell in rows("Redis").items():
        literal = re.match(r"`([^`]*)`", cell)
        if name in actual and literal is not None and _value(literal.group(1)) is not _PROSE:
            assert _value(literal.group(1)) == actual[name], name


def test_the_memory_broker_takes_no_options() -> None:
    # The page says so: an option appearing here must get a table.
    with pytest.raises(Exception, match="unknown memory broker option"):
        App("memory://", anything=1)
    assert "takes no options" in sections()["memory"]


def test_every_environment_variable_the_package_reads_has_a_row() -> None:
    read = set()
    for path in (ROOT / "aioack").rglob("*.py"):
        read |= set(re.findall(r"\bAIOACK_[A-Z_]+\b", path.read_text()))
    assert read, "no AIOACK_* name found: the search is broken"
    assert read == set(rows("Environment variables"))


#: Command -> the page section that lists its flags.
COMMANDS = {
    ("worker",): "worker",
    ("scheduler",): "scheduler",
    ("inspect",): "inspect",
    ("dlq", "list"): "dlq",
    ("dlq", "show"): "dlq",
    ("dlq", "replay"): "dlq",
    ("dlq", "purge"): "dlq",
    ("revoke",): "revoke",
}
#: Flags every command has, listed once under "Every command".
COMMON = {"--help", "--log-level", "--log-format"}


def help_flags(argv: tuple[str, ...]) -> set[str]:
    """The long flags a command's ``--help`` lists (whatever builds the parser)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--help"]) == 0
    # The options only: the examples and the exit codes below them name other commands' flags.
    options = out.getvalue().split("\nexamples:")[0]
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", options))


@pytest.mark.parametrize("argv", sorted(COMMANDS), ids=" ".join)
def test_every_flag_of_a_command_has_a_row(argv: tuple[str, ...]) -> None:
    flags = help_flags(argv) - COMMON
    documented = {name for name in rows(COMMANDS[argv]) if name.startswith("--")}
    assert flags - documented == set(), f"{' '.join(argv)}: flags without a row"


def test_every_flag_row_is_a_flag_of_its_commands() -> None:
    by_section: dict[str, set[str]] = {}
    for argv, section in COMMANDS.items():
        by_section.setdefault(section, set()).update(help_flags(argv))
    for section, flags in by_section.items():
        documented = {name for name in rows(section) if name.startswith("--")}
        assert documented - flags == set(), f"{section}: rows for flags that do not exist"


def test_the_flags_of_the_bare_command_have_rows_under_every_command() -> None:
    # Its --help also shows every command's examples: a flag no command has is its own.
    own = help_flags(()) - set().union(*(help_flags(argv) for argv in COMMANDS))
    documented = set(rows("Every command"))
    assert own - documented == set()
    assert documented <= help_flags(())
    assert COMMON.issubset(documented)


_PROSE = object()


def _value(text: str) -> Any:
    """A Python literal as the page writes it (``30``, ``"full"``, ``None``, ``()``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return _PROSE
