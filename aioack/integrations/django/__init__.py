"""Django: one App from ``settings.AIOACK``, task autodiscovery, publish on commit,
and a worker that sets Django up and closes stale database connections.

In ``settings.py``:

    AIOACK = {"BROKER_URL": "redis://127.0.0.1:6379/0", "RESULTS_URL": "redis://127.0.0.1:6379/1"}

In each app's ``tasks.py``:

    from aioack.integrations.django import app

    @app.task
    def send_welcome(user_id: int) -> None: ...

In a view: ``send_welcome.delay_on_commit(user.id)`` (published only if the
transaction commits), or ``send_welcome.delay_sync(user.id)`` (at once). The
worker: ``DJANGO_SETTINGS_MODULE=proj.settings python -m aioack worker
aioack.integrations.django:app``. Guide: docs/django.md.
"""

from __future__ import annotations

try:
    import django  # noqa: F401  (only to say what is missing)
except ImportError as exc:  # aioack itself never needs Django
    raise ImportError(
        f"aioack.integrations.django needs Django: pip install 'django>=4.2' ({exc})"
    ) from exc

from aioack.integrations.django.config import SETTINGS_KEYS, SETTINGS_NAME, app_from_settings
from aioack.integrations.django.djangoapp import DjangoApp, DjangoTask, closing_connections
from aioack.integrations.django.project import autodiscover_tasks, get_app

__all__ = [
    "SETTINGS_KEYS",
    "SETTINGS_NAME",
    "DjangoApp",
    "DjangoTask",
    "app_from_settings",
    "autodiscover_tasks",
    "closing_connections",
    "get_app",
]


def __getattr__(name: str) -> DjangoApp:
    # ``app`` is made on first use, not at import: reading settings needs
    # DJANGO_SETTINGS_MODULE, and importing this module must not need it.
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # Lists ``app`` without making it (tools that look, e.g. ``dir()``, build nothing).
    return sorted([*globals(), "app"])
