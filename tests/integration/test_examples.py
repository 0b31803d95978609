"""The examples run as their docstrings say (effect-once against real Redis)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REDIS_URL, require_service

ROOT = Path(__file__).resolve().parents[2]


def test_effect_once_example_credits_once_over_a_retry_and_a_duplicate() -> None:
    require_service(REDIS_URL)
    done = subprocess.run(
        [sys.executable, "examples/effect_once.py", REDIS_URL],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "attempt 1: credit applied",
        "attempt 2: credit already applied",
        "results: 500 500",
        "balance of ada: 500 cents",
    ]


def test_timing_hook_example_sees_every_run_and_settle() -> None:
    done = subprocess.run(
        [sys.executable, "examples/timing_hook.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("broken: 1 runs, longest ")
    assert lines[1].startswith("resize: 3 runs, longest ")
    assert lines[2:] == ["ack: 3", "dead_letter (failed): 1"]
