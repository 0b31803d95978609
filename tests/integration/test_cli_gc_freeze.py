"""The worker command freezes what start-up made and spaces out young collections
(aioack/cli/gcfreeze.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aioack import App
from aioack.cli.gcfreeze import YOUNG_THRESHOLD
from aioack.message import Message, new_task_id
from tests.apps import simple

ROOT = Path(__file__).resolve().parents[2]


async def _publish_one(url: str) -> None:
    async with App(broker=url) as producer:
        message = Message(id=new_task_id(), task=simple.note_frozen_objects.name)
        await producer.publish(message, "simple")


def test_a_task_run_by_the_worker_command_sees_a_frozen_start_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/gc.db"
    asyncio.run(_publish_one(url))
    mark = tmp_path / "frozen"
    argv = [sys.executable, "-m", "aioack", "worker", "tests.apps.simple:app", "--broker", url]
    done = subprocess.run(
        [*argv, "--burst", "-Q", "simple"],
        cwd=ROOT,
        env={**os.environ, "AIOACK_TEST_MARK": str(mark)},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    frozen, young_threshold = map(int, mark.read_text().split())
    # Thousands of objects (modules, the App, connections) exist by then; a
    # process that never froze reports 0.
    assert frozen > 1000
    assert young_threshold == YOUNG_THRESHOLD  # CPython's default is 700
