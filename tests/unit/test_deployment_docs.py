"""The deployment snippets (docs/deployment.md, docs/operations.md) hold together.

A grace period shorter than the worker's drain kills it mid-drain, and a
misspelt flag stops a worker at start: both are easy to write in YAML and
invisible until a deploy. These tests read the snippets as a user copies them.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aioack.cli.main import main
from aioack.worker import CLOSE_ALLOWANCE_S

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = ROOT / "docs" / "deployment.md"
OPERATIONS = ROOT / "docs" / "operations.md"

#: A stop takes at most shutdown_timeout plus this (the closing steps, then the CLI's close).
STOP_BEYOND_TIMEOUT_S = 2 * CLOSE_ALLOWANCE_S


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.M | re.S)


def yaml_documents() -> list[Any]:
    found = []
    for path in (DEPLOYMENT, OPERATIONS):
        for block in blocks(path, "yaml"):
            found.extend(doc for doc in yaml.safe_load_all(block) if doc is not None)
    return found


def worker_flags() -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["worker", "--help"]) == 0
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", out.getvalue()))


def shutdown_timeout(command: list[str]) -> float:
    assert command[:4] == ["python", "-m", "aioack", "worker"], command
    unknown = {arg for arg in command if arg.startswith("--")} - worker_flags()
    assert unknown == set(), f"not flags of `aioack worker`: {unknown}"
    if "--shutdown-timeout" not in command:
        return 30.0
    return float(command[command.index("--shutdown-timeout") + 1])


def seconds(value: str | int) -> float:
    if isinstance(value, int):
        return float(value)
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_every_yaml_snippet_parses() -> None:
    assert len(yaml_documents()) >= 5  # compose, Deployment, Secret, PodMonitor, PDB...


def test_the_compose_worker_gets_a_grace_beyond_its_drain() -> None:
    compose = next(doc for doc in yaml_documents() if "services" in doc)
    worker = compose["services"]["worker"]
    drain_s = shutdown_timeout(worker["command"])
    assert seconds(worker["stop_grace_period"]) >= drain_s + STOP_BEYOND_TIMEOUT_S


def test_the_kubernetes_worker_gets_a_grace_beyond_its_drain() -> None:
    deployments = [doc for doc in yaml_documents() if doc.get("kind") == "Deployment"]
    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            drain_s = shutdown_timeout(container["command"])
            grace_s = pod["terminationGracePeriodSeconds"]
            assert grace_s >= drain_s + STOP_BEYOND_TIMEOUT_S


def test_the_systemd_unit_gets_a_grace_beyond_its_drain() -> None:
    (unit,) = [b for b in blocks(OPERATIONS, "ini") if "ExecStart=" in b]
    start = unit.split("ExecStart=", 1)[1].split("\n\n")[0]
    command = re.sub(r"\\\n\s*", " ", start).split("\n")[0].split()
    command[0] = "python"  # /srv/myproj/.venv/bin/python
    grace = re.search(r"^TimeoutStopSec=(\d+)$", unit, flags=re.M)
    assert grace is not None
    assert float(grace.group(1)) >= shutdown_timeout(command) + STOP_BEYOND_TIMEOUT_S
    assert "KillMode=mixed" in unit


def test_the_dockerfile_runs_the_worker_in_exec_form() -> None:
    # The shell form puts /bin/sh between Docker and the worker: no SIGTERM reaches it.
    (dockerfile,) = blocks(DEPLOYMENT, "dockerfile")
    (cmd,) = re.findall(r"^CMD (.*)$", dockerfile, flags=re.M)
    command = json.loads(cmd)
    assert shutdown_timeout(command) == 30


@pytest.mark.parametrize(
    ("where", "grace_s"),
    [("Docker, Compose", "40s"), ("Kubernetes", "40"), ("systemd", "40")],
)
def test_the_grace_table_matches_the_snippets(where: str, grace_s: str) -> None:
    row = next(
        line for line in DEPLOYMENT.read_text().splitlines() if line.startswith(f"| {where} |")
    )
    assert row.rstrip(" |").endswith(f"`{grace_s}`")
