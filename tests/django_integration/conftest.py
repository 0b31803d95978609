"""The test Django project, set up once per session: a SQLite file, a Redis key prefix.

Django's settings are one per process, so the project is configured once
(``django_project``); every test that touches Django asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support import REDIS_URL, require_service, unique

SETTINGS_MODULE = "tests.django_project.settings"


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Django set up on the test project, its tables made; yields the environment a
    worker process needs (the same database file and key prefix)."""
    require_service(REDIS_URL)
    import django
    from django.core.management import call_command

    prefix = unique("aioack-django")
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "DJANGO_PROJECT_DB": str(Path(tmp_path_factory.mktemp("django")) / "db.sqlite3"),
        "DJANGO_PROJECT_REDIS_PREFIX": prefix,
    }
    os.environ.update(env)
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    yield env
    from aioack.integrations.django import get_app

    get_app().close_sync()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module", autouse=True)
def _close_the_sync_thread_after_each_module() -> Iterator[None]:
    """The project App's sync loop thread ends with the module that started it:
    other modules count the sync threads alive."""
    yield
    from aioack.integrations.django import project

    if project._made is not None:
        project._made.close_sync()
