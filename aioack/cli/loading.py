"""Importing what the command line names: ``module.path:attribute``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import cast

from aioack.app import App
from aioack.errors import ConfigurationError
from aioack.hooks import check as check_hook
from aioack.worker import Redactor


class AppNotFound(Exception):
    """Raised when MODULE:APP cannot be imported, or is not an App (exit code 4)."""


def load_app(spec: str) -> App:
    """Import ``module.path:attribute`` and check that it is an App.

    Raises:
        AppNotFound: it cannot be imported, or is no App.
    """
    try:
        app = _load(spec)
    except (ImportError, AttributeError) as exc:
        raise AppNotFound(f"cannot load {spec!r}: {exc}") from exc
    if not isinstance(app, App):
        raise AppNotFound(f"cannot load {spec!r}: it is a {type(app).__name__}, not an aioack App")
    return app


def load_hook(spec: str) -> object:
    """Import a hook: ``module.path:attribute``, an object or a class made with no arguments.

    Raises:
        ConfigurationError: it cannot be imported or made, or is no hook.
    """
    try:
        hook = _load(spec)
        if isinstance(hook, type):
            hook = hook()
    except (ImportError, AttributeError, TypeError) as exc:
        raise ConfigurationError(f"--hook {spec}: {exc}") from exc
    check_hook(hook)
    return hook


def load_redactor(spec: str) -> Redactor:
    """Import the ``--log-values`` redactor: a callable ``(task, what, value) -> value``.

    Raises:
        ConfigurationError: it cannot be imported, or is not callable.
    """
    try:
        redactor = _load(spec)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"--log-values {spec}: {exc}") from exc
    if not callable(redactor):
        raise ConfigurationError(
            f"--log-values {spec}: a {type(redactor).__name__} is not callable"
        )
    return cast(Redactor, redactor)


def _load(spec: str) -> object:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ImportError(f"{spec!r}: expected module.path:attribute, e.g. myproj.tasks:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current directory imports
    return getattr(importlib.import_module(module_name), attribute)
