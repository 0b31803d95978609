"""The project's one App: made from settings on first use; in a worker, after
setting Django up, with every installed app's tasks imported."""

from __future__ import annotations

import importlib
import logging
import os
import threading
import traceback

import django
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import module_has_submodule

from aioack.errors import ConfigurationError
from aioack.integrations.django.config import SETTINGS_NAME, app_from_settings
from aioack.integrations.django.djangoapp import DjangoApp

logger = logging.getLogger("aioack.integrations.django")

# Re-entrant: setting Django up may import a tasks module, which asks for the App.
_lock = threading.RLock()
_made: DjangoApp | None = None


def get_app() -> DjangoApp:
    """The project's App, made from ``settings.AIOACK`` on the first call.

    In a process nobody set Django up in (the worker, started as
    ``python -m aioack worker aioack.integrations.django:app``), it calls
    ``django.setup()`` first and then imports each installed app's
    ``tasks`` module (``autodiscover_tasks``), so the worker knows every
    task. Where Django is already set up (runserver, a WSGI/ASGI server,
    ``manage.py``) it imports nothing: code that calls a task has imported it.

    Raises:
        ConfigurationError: DJANGO_SETTINGS_MODULE is not set (and settings
            were not configured), or ``settings.AIOACK`` is bad.
    """
    global _made
    with _lock:
        if _made is not None:
            return _made
        set_up_here = _set_up_django()
        if _made is None:  # (set-up may have made it: an AppConfig.ready() importing tasks)
            _made = app_from_settings(getattr(settings, SETTINGS_NAME, None))
        if set_up_here:
            found = autodiscover_tasks()
            logger.info("django: tasks modules imported: %s", ", ".join(found) or "none")
        return _made


def _set_up_django() -> bool:
    """``django.setup()`` unless done or under way; whether it was done here."""
    if apps.ready or apps.loading:
        return False
    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ConfigurationError(
            "aioack.integrations.django: Django's settings are not configured: set "
            "DJANGO_SETTINGS_MODULE (e.g. DJANGO_SETTINGS_MODULE=proj.settings), as "
            "manage.py does, and run from the project's directory"
        )
    try:
        django.setup()
    except ImproperlyConfigured as exc:
        raise ConfigurationError(f"aioack.integrations.django: {exc}") from exc
    return True


def autodiscover_tasks(related_name: str = "tasks") -> list[str]:
    """Import the ``related_name`` module of every installed app that has one.

    Like Celery's ``app.autodiscover_tasks()``: an app without the module is
    skipped; an error inside one is raised (a broken tasks module must not
    leave a worker silently without its tasks). Returns the modules imported.

    Raises:
        ImportError: a module raised while imported; says which, and where
            (the worker's exit code 4, in one line).
        ConfigurationError: a task in it was declared wrong (a bad option).
    """
    found = []
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, related_name):
            name = f"{config.name}.{related_name}"
            _import(name)
            found.append(name)
    return found


def _import(name: str) -> None:
    try:
        importlib.import_module(name)
    except ConfigurationError:
        raise
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise ImportError(
            f"importing {name} raised {type(exc).__name__}: {exc} "
            f"({where.filename}, line {where.lineno})"
        ) from exc
