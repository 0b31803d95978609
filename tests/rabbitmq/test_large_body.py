"""A 20 MB body is dead-lettered ``too_large``, and the worker's memory comes back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.serial,  # measures the worker's memory
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, glibc"),
]

ROOT = Path(__file__).resolve().parents[2]


def test_rss_does_not_keep_oversized_bodies(amqp_url: str) -> None:
    probe = subprocess.run(
        [sys.executable, "-m", "tests.rabbitmq.rss_probe", amqp_url, "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    growth = [float(line.split()[1]) for line in probe.stdout.splitlines()]
    assert len(growth) == 5, probe.stdout
    # Without the trim, RSS stayed 20-50 MB above the start after such rounds.
    assert max(growth) < 10.0, f"RSS growth per round (MB): {growth}"
