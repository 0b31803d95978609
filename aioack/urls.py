"""Brokers and result backends from URLs: the scheme picks the class, the query its options.

Written once for brokers and result backends alike:

- ``parse_options`` splits a URL's query into the component's own options
  (validated by its pydantic model: a typo is refused with the closest
  name) and the parameters its client library reads itself.
- ``load`` finds the class a URL's scheme names, importing its optional
  client library only then, with a message naming the extra to install.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from aioack.errors import ConfigurationError

Model = TypeVar("Model", bound=BaseModel)

#: Query parameters redis-py reads from a ``redis://`` URL itself (connection details).
REDIS_CLIENT_QUERY = frozenset(
    {
        "db",
        "client_name",
        "health_check_interval",
        "socket_keepalive",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
    }
)


def parse_options(
    url: str,
    overrides: Mapping[str, Any],
    model: type[Model],
    *,
    what: str,
    client_query: frozenset[str] = frozenset(),
) -> tuple[str, Model]:
    """Validate ``url``'s query (keyword ``overrides`` win) into ``model``.

    Parameters in ``client_query`` stay in the returned URL for the client
    library; everything else must be a field of ``model``.

    Raises:
        ConfigurationError: an unknown option (with the closest known name) or a
            bad value, naming ``what`` ("Redis broker", "Redis results", ...).
    """
    parts = urlsplit(url)
    ours: dict[str, Any] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in client_query:
            theirs.append((name, value))
        else:
            ours[name] = value
    ours.update(overrides)
    try:
        options = model.model_validate(ours)
    except ValidationError as exc:
        raise ConfigurationError(explain(exc, model, what, client_query)) from exc
    return urlunsplit(parts._replace(query=urlencode(theirs))), options


def explain(
    exc: ValidationError, model: type[BaseModel], what: str, also_known: Iterable[str] = ()
) -> str:
    """One line per problem, each saying what to change."""
    known = sorted(model.model_fields)
    problems = []
    for error in exc.errors(include_url=False):
        name = ".".join(map(str, error["loc"]))
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(name, [*known, *also_known], n=1)
            hint = f"did you mean {close[0]!r}" if close else f"known: {', '.join(known)}"
            problems.append(f"unknown {what} option {name!r} ({hint})")
        elif name:
            shown = repr(error.get("input"))[:60]
            problems.append(f"{what} option {name}={shown}: {error['msg']}")
        else:  # a rule across options
            problems.append(f"{what} options: {error['msg']}")
    return "; ".join(problems)


@dataclass(frozen=True, slots=True)
class Scheme:
    """Where the class for one URL scheme lives."""

    module: str
    cls: str
    #: The pip extra that brings its client library ("" for none).
    extra: str = ""


def load(url: str, schemes: Mapping[str, Scheme], *, what: str) -> Any:
    """The class ``url``'s scheme names in ``schemes`` (imported now).

    Raises:
        ConfigurationError: an unknown scheme, or its client library is missing.
    """
    scheme = urlsplit(url).scheme.lower()
    entry = schemes.get(scheme)
    if entry is None:
        known = ", ".join(f"{s}://" for s in schemes)
        raise ConfigurationError(f"unknown {what} URL scheme {scheme!r}; use one of {known}")
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise ConfigurationError(
            f"{scheme}:// needs the {entry.extra} client: pip install 'aioack[{entry.extra}]' "
            f"({exc})"
        ) from exc
    return getattr(module, entry.cls)


#: ``scheme://user:password@`` anywhere in a text (an error message quoting a URL).
_CREDENTIALS_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):[^\s@]*@")


def scrubbed(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ``***``: for text
    that leaves the process (a probe's answer) and may quote a client's error."""
    return _CREDENTIALS_IN_TEXT.sub(r"\1:***@", text)


def masked(url: str) -> str:
    """``url`` without its query and with any password replaced by ``***``: for logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, _, host = netloc.rpartition("@")
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=""))
