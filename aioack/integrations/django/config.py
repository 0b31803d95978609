"""``settings.AIOACK``: the dict in Django's settings that configures the project's App."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from django.utils.module_loading import import_string

from aioack.errors import ConfigurationError
from aioack.integrations.django.djangoapp import DjangoApp

#: The name of the setting, in settings.py.
SETTINGS_NAME = "AIOACK"

#: Key of ``settings.AIOACK`` -> the ``App()`` argument it sets.
SETTINGS_KEYS: Mapping[str, str] = {
    "BROKER_URL": "broker",
    "RESULTS_URL": "results",
    "RESULT_EXPIRES": "result_expires",
    "IDEMPOTENCY_LEASE": "idempotency_lease",
    "REVOKE_EXPIRES": "revoke_expires",
    "MAX_MESSAGE_BYTES": "max_message_bytes",
    "HOOKS": "hooks",
    "QUEUE_LIMITS": "queue_limits",
    "BROKER_OPTIONS": "**broker_options",
}


def app_from_settings(config: object) -> DjangoApp:
    """The App ``settings.AIOACK`` describes (``None``: every default).

    A key left out takes ``App()``'s default: without ``BROKER_URL``,
    ``$AIOACK_BROKER_URL``, else the SQLite file ``aioack.db``; without
    ``RESULTS_URL``, ``$AIOACK_RESULTS_URL``, else no results.

    Raises:
        ConfigurationError: not a dict, an unknown key, or a value App() refuses.
    """
    return DjangoApp(**app_options(config))


def app_options(config: object) -> dict[str, Any]:
    """``App()``'s keyword arguments from ``settings.AIOACK``.

    Raises:
        ConfigurationError: not a dict, an unknown key, a bad HOOKS or BROKER_OPTIONS.
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigurationError(
            f"settings.{SETTINGS_NAME} must be a dict, e.g. "
            f'{{"BROKER_URL": "redis://127.0.0.1:6379/0"}}, not a {type(config).__name__}'
        )
    options: dict[str, Any] = {}
    for key, value in config.items():
        argument = SETTINGS_KEYS.get(key) if isinstance(key, str) else None
        if argument is None:
            raise ConfigurationError(_unknown_key(key))
        if argument == "**broker_options":
            options.update(_broker_options(value))
        elif argument == "hooks":
            options["hooks"] = [_hook(spec) for spec in _sequence("HOOKS", value)]
        else:
            options[argument] = value
    return options


def _unknown_key(key: object) -> str:
    close = difflib.get_close_matches(str(key), SETTINGS_KEYS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"settings.{SETTINGS_NAME}: unknown key {key!r}; {hint}known: {', '.join(SETTINGS_KEYS)}"


def _broker_options(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigurationError(
            f"settings.{SETTINGS_NAME}['BROKER_OPTIONS'] must be a dict of option names, "
            f'e.g. {{"visibility_timeout": 60}}, not {value!r}'
        )
    return dict(value)


def _sequence(key: str, value: object) -> list[object]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ConfigurationError(
            f"settings.{SETTINGS_NAME}[{key!r}] must be a list, not a {type(value).__name__}"
        )
    return list(value)


def _hook(spec: object) -> object:
    """A hook object, or a dotted path (Django's form) to one or to a class made with
    no arguments. Its events are checked by App()."""
    if not isinstance(spec, str):
        return spec
    try:
        hook = import_string(spec)
        return hook() if isinstance(hook, type) else hook
    except (ImportError, TypeError) as exc:
        raise ConfigurationError(f"settings.{SETTINGS_NAME}['HOOKS']: {spec}: {exc}") from exc
