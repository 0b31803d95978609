"""RabbitMQ's management HTTP API: what AMQP cannot tell (all consumers' unacked
counts, the queues that exist, the live workers).

Optional: given by the broker option ``management_url`` (``inspect
--management-url``), e.g. ``http://guest:guest@127.0.0.1:15672`` (the
rabbitmq_management plugin). Without credentials in it, the AMQP URL's are
used. Why the standard library's urllib, run on a thread: a few GET requests
from a command-line tool need no HTTP client dependency.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from aioack.errors import BrokerUnavailable, ConfigurationError
from aioack.urls import masked

#: Responses larger than this are refused (a misconfigured URL, a proxy page).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Seconds a queue listing is reused: RabbitMQ refreshes its figures every 5 s
#: (collect_statistics_interval), so asking more often only loads the server,
#: with every worker's depth refresher and watermark sampler asking.
LISTING_TTL_S = 5.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows a redirect with every header, the password's included, to
    whatever host it names: a redirect is an error here instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class ManagementAPI:
    def __init__(self, url: str, amqp_url: str, *, timeout_s: float) -> None:
        parts, amqp = urlsplit(url), urlsplit(amqp_url)
        if parts.scheme not in ("http", "https"):
            raise ConfigurationError(
                f"management_url {masked(url)!r}: give the HTTP API, e.g. "
                "http://guest:guest@127.0.0.1:15672"
            )
        user = unquote(parts.username or amqp.username or "guest")
        password = unquote(parts.password or amqp.password or "guest")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        host = parts.hostname or "127.0.0.1"
        netloc = f"{host}:{parts.port}" if parts.port else host
        self._base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.shown = masked(url)
        vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        self._vhost = quote(vhost, safe="")
        self._timeout_s = timeout_s
        #: columns -> (monotonic time read, the listing)
        self._listings: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    async def queue(self, name: str) -> dict[str, Any] | None:
        """The queue's figures, or None when it does not exist."""
        found = await self._get(f"/api/queues/{self._vhost}/{quote(name, safe='')}")
        return found if isinstance(found, dict) else None

    async def queues(self, columns: str = "") -> list[dict[str, Any]]:
        """Every queue of the vhost (read at most every LISTING_TTL_S); only
        ``columns`` (comma-separated) when given."""
        cached = self._listings.get(columns)
        if cached is not None and time.monotonic() - cached[0] < LISTING_TTL_S:
            return cached[1]
        query = f"?columns={quote(columns, safe=',')}" if columns else ""
        listing = _dicts(await self._get(f"/api/queues/{self._vhost}{query}"))
        self._listings[columns] = (time.monotonic(), listing)
        return listing

    async def consumers(self) -> list[dict[str, Any]]:
        return _dicts(await self._get(f"/api/consumers/{self._vhost}"))

    async def channels(self) -> list[dict[str, Any]]:
        return _dicts(await self._get(f"/api/channels/{self._vhost}"))

    async def _get(self, path: str) -> Any:
        return await asyncio.to_thread(self._fetch, path)

    def _fetch(self, path: str) -> Any:
        request = urllib.request.Request(
            self._base + path, headers={"Authorization": self._auth, "Accept": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=self._timeout_s) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if 300 <= exc.code < 400:
                raise BrokerUnavailable(
                    f"RabbitMQ management API at {self.shown} answered a redirect "
                    f"({exc.code}), which is not followed (it would take the password "
                    "along): give the API's own address"
                ) from exc
            raise BrokerUnavailable(
                f"RabbitMQ management API at {self.shown} answered {exc.code} {exc.reason}"
                + (": check the user and password" if exc.code == 401 else "")
            ) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(
                f"RabbitMQ management API at {self.shown} unreachable ({exc}); is the "
                "rabbitmq_management plugin enabled (rabbitmq-plugins enable "
                "rabbitmq_management)?"
            ) from exc
        if len(raw) > MAX_RESPONSE_BYTES:
            raise BrokerUnavailable(f"RabbitMQ management API at {self.shown}: answer too large")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BrokerUnavailable(
                f"RabbitMQ management API at {self.shown} did not answer JSON: is it the "
                "management port?"
            ) from exc


def _dicts(found: Any) -> list[dict[str, Any]]:
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []
