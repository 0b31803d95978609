"""A Django project against real Redis: a view's sync calls, and a real worker
process started as docs/django.md says, running ORM tasks it found by itself.

The worker is ``python -m aioack worker aioack.integrations.django:app``: it
imports no module of the project but the settings, so every task it runs was
found by autodiscovery, and every row it writes went through Django set up
in that process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = [sys.executable, "-m", "aioack", "worker", "aioack.integrations.django:app"]


@pytest.fixture(scope="module")
def worker(
    django_project: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """One worker process for the module, on the shop queue, one run at a time
    (so one thread runs them all: see the connection test). Yields its log file."""
    log = Path(tmp_path_factory.mktemp("worker")) / "worker.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*WORKER, "-Q", "shop", "-c", "1"],
            cwd=ROOT,
            env={**os.environ, **django_project},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        finally:
            process.kill()
        assert code == 0, log.read_text()


def test_a_sync_view_enqueues_and_reads_the_result(worker: Path) -> None:
    from django.test import Client

    response = Client().get("/add", {"x": 2, "y": 3})

    assert response.status_code == 200, response.content
    assert response.json()["sum"] == 5


def test_the_worker_runs_an_orm_task_it_found_by_autodiscovery(worker: Path) -> None:
    from tests.django_project.shop.models import Widget
    from tests.django_project.shop.tasks import create_widget

    name = f"w-{uuid.uuid4().hex[:8]}"
    made = create_widget.delay_sync(name).get_sync(timeout=60)

    # The row the worker process wrote, read back here through the ORM.
    assert Widget.objects.get(id=made["id"]).name == name
    assert "tasks modules imported: tests.django_project.shop.tasks" in worker.read_text()


def test_a_worker_thread_starts_each_run_without_the_last_runs_connection(
    worker: Path,
) -> None:
    from tests.django_project.shop.tasks import connection_state, create_widget

    # Given a run that opened a connection in the worker's one thread...
    first = create_widget.delay_sync("opens-a-connection").get_sync(timeout=60)
    # ...the next run in that same thread finds it closed (CONN_MAX_AGE = 0).
    second = connection_state.delay_sync().get_sync(timeout=60)

    assert second["thread"] == first["thread"], "not the same thread: nothing is shown"
    assert second["open"] == 0
