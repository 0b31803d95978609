"""Settings, autodiscovery, connection handling and start-up errors of the Django
integration, in this process (no worker): what each promises, one test each."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from aioack import ConfigurationError
from aioack.brokers.sqlite import SQLiteBroker
from aioack.cli.codes import ExitCode
from aioack.integrations.django import (
    DjangoTask,
    app_from_settings,
    autodiscover_tasks,
    closing_connections,
    get_app,
)
from aioack.results.sqlite import SQLiteResultBackend

ROOT = Path(__file__).resolve().parents[2]


class CountingHook:
    def __init__(self) -> None:
        self.published = 0

    def on_publish(self, event: object) -> None:
        self.published += 1


def test_settings_keys_become_the_apps_options(tmp_path: Path) -> None:
    app = app_from_settings(
        {
            "BROKER_URL": f"sqlite:///{tmp_path}/q.db",
            "RESULTS_URL": f"sqlite:///{tmp_path}/r.db",
            "REVOKE_EXPIRES": 60,
            "MAX_MESSAGE_BYTES": 4096,
            "HOOKS": [f"{__name__}.CountingHook"],
            "BROKER_OPTIONS": {"visibility_timeout": 5},
            "QUEUE_LIMITS": {"default": {"max_length": 10}},
        }
    )
    assert isinstance(app.broker, SQLiteBroker)
    assert isinstance(app.results, SQLiteResultBackend)
    assert app.revoke_expires == 60
    assert app.max_message_bytes == 4096
    assert [type(h).__name__ for h in app.hooks] == ["CountingHook"]
    assert app.queue_limits["default"].max_length == 10


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"BROKER": "redis://"}, "unknown key 'BROKER'; did you mean 'BROKER_URL'?"),
        ("redis://127.0.0.1", "must be a dict"),
        ({"BROKER_OPTIONS": ["visibility_timeout"]}, "BROKER_OPTIONS'] must be a dict"),
        ({"HOOKS": "proj.hooks.Timing"}, "HOOKS'] must be a list"),
        ({"HOOKS": ["proj.nowhere.Timing"]}, "HOOKS']: proj.nowhere.Timing"),
        ({"BROKER_URL": "sqlite://", "BROKER_OPTIONS": {"visiblity": 1}}, "visiblity"),
        ({"IDEMPOTENCY_LEASE": 0}, "idempotency_lease must be > 0"),
    ],
)
def test_bad_settings_fail_at_start_up_saying_what_to_change(config: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("?", r"\?")):
        app_from_settings(config)


@pytest.mark.usefixtures("django_project")
def test_autodiscovery_imports_each_installed_apps_tasks_module() -> None:
    assert autodiscover_tasks() == ["tests.django_project.shop.tasks"]
    assert {"shop.add", "shop.create_widget", "shop.widget_created"} <= set(get_app().tasks)
    assert autodiscover_tasks("no_such_module") == []


@pytest.mark.usefixtures("django_project")
def test_tasks_of_the_project_app_have_delay_on_commit() -> None:
    from tests.django_project.shop.tasks import add

    assert isinstance(add, DjangoTask)
    assert get_app().tasks["shop.add"] is add


def in_a_thread(fn: Any) -> Any:
    """Run ``fn`` in a new thread (Django's connections are per thread); return its value."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join(30)
    return out[0]


@pytest.mark.usefixtures("django_project")
def test_a_plain_def_run_closes_the_stale_connection_before_and_its_own_after() -> None:
    from django.db import connection

    from tests.django_project.shop.models import Widget
    from tests.django_project.shop.tasks import create_widget

    def scenario() -> tuple[bool, bool, bool]:
        connection.ensure_connection()  # a connection an earlier run left open
        seen: list[bool] = []

        def body(name: str) -> Any:
            seen.append(connection.connection is not None)
            return create_widget.fn(name)  # opens a connection of its own

        run = closing_connections(_with_fn(create_widget, body)).fn
        run("in-thread")
        closed_after = connection.connection is None
        return seen[0], closed_after, Widget.objects.filter(name="in-thread").exists()

    open_at_start, closed_after, wrote = in_a_thread(scenario)
    assert open_at_start is False  # closed before the body ran (CONN_MAX_AGE = 0)
    assert closed_after is True  # the run's own connection closed after it
    assert wrote is True


@pytest.mark.usefixtures("django_project")
def test_the_registered_task_and_async_tasks_are_left_as_they_are() -> None:
    from tests.django_project.shop.tasks import create_widget

    wrapped = closing_connections(create_widget)
    assert wrapped is not create_widget and wrapped.fn is not create_widget.fn
    assert create_widget.fn.__name__ == "create_widget" == wrapped.fn.__name__
    assert wrapped.signature is create_widget.signature

    async def fetch() -> None: ...

    async_task = get_app().task(name="setup-test.fetch")(fetch)
    try:
        assert closing_connections(async_task) is async_task
    finally:
        del get_app().tasks["setup-test.fetch"]


def _with_fn(task: Any, fn: Any) -> Any:
    import copy

    made = copy.copy(task)
    made.fn = fn
    return made


def test_aioack_imports_without_django_and_the_integration_says_what_is_missing() -> None:
    code = (
        "import sys; sys.modules['django'] = None\n"
        "import aioack, aioack.cli.main, aioack.integrations.fastapi\n"
        "try:\n    import aioack.integrations.django\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "aioack.integrations.django needs Django: pip install 'django>=4.2'" in done.stdout


def test_the_worker_without_django_settings_says_to_set_them() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-m", "aioack", "worker", "aioack.integrations.django:app", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == ExitCode.CONFIG_ERROR, done.stderr
    assert "set DJANGO_SETTINGS_MODULE (e.g. DJANGO_SETTINGS_MODULE=proj.settings)" in done.stderr


@pytest.mark.usefixtures("django_project")
def test_a_tasks_module_that_raises_stops_discovery_saying_which_and_where() -> None:
    with pytest.raises(ImportError) as raised:
        autodiscover_tasks("broken_tasks")
    message = str(raised.value)
    assert "importing tests.django_project.shop.broken_tasks raised ZeroDivisionError" in message
    assert "broken_tasks.py, line 3" in message


def test_every_app_option_has_a_settings_key() -> None:
    import inspect

    from aioack import App
    from aioack.integrations.django import SETTINGS_KEYS

    options = inspect.signature(App.__init__).parameters.values()
    arguments = {f"**{p.name}" if p.kind is p.VAR_KEYWORD else p.name for p in options}
    assert set(SETTINGS_KEYS.values()) == arguments - {"self"}
