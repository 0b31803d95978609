"""The management API client against stand-in HTTP servers (no RabbitMQ needed):
a redirect never takes the password along, and a queue listing is reused for a
few seconds, however often the workers ask."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aioack.brokers.rabbitmq import management
from aioack.brokers.rabbitmq.management import ManagementAPI
from aioack.errors import BrokerUnavailable

AMQP = "amqp://guest:guest@127.0.0.1:5672/"


class Recorder(BaseHTTPRequestHandler):
    """Answers every GET with ``answer``; keeps each request's path and headers."""

    seen: list[tuple[str, str | None]]
    answer: tuple[int, dict[str, str], bytes]

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        code, headers, body = self.answer
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _server(answer: tuple[int, dict[str, str], bytes]) -> tuple[ThreadingHTTPServer, list[Any]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (Recorder,), {"seen": seen, "answer": answer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def servers() -> Iterator[list[ThreadingHTTPServer]]:
    made: list[ThreadingHTTPServer] = []
    yield made
    for server in made:
        server.shutdown()
        server.server_close()


async def test_a_redirect_is_an_error_and_the_password_goes_nowhere_else(
    servers: list[ThreadingHTTPServer],
) -> None:
    elsewhere, seen_elsewhere = _server((200, {"Content-Type": "application/json"}, b"[]"))
    port = elsewhere.server_address[1]
    location = {"Location": f"http://127.0.0.1:{port}/api/queues/%2F"}
    redirecting, seen = _server((302, location, b""))
    servers += [elsewhere, redirecting]
    api = ManagementAPI(
        f"http://admin:s3cret@127.0.0.1:{redirecting.server_address[1]}", AMQP, timeout_s=5
    )
    with pytest.raises(BrokerUnavailable, match="redirect") as raised:
        await api.queues()
    assert "s3cret" not in str(raised.value)
    assert len(seen) == 1 and seen[0][1] is not None, "asked the API, with credentials"
    assert seen_elsewhere == [], "followed the redirect, password and all"


async def test_a_queue_listing_is_reused_for_a_few_seconds(
    servers: list[ThreadingHTTPServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = json.dumps([{"name": "q", "messages_dlx": 0}]).encode()
    server, seen = _server((200, {"Content-Type": "application/json"}, listing))
    servers.append(server)
    api = ManagementAPI(f"http://127.0.0.1:{server.server_address[1]}", AMQP, timeout_s=5)
    for _ in range(10):
        assert await api.queues("name,messages_dlx") == [{"name": "q", "messages_dlx": 0}]
    assert len(seen) == 1
    monkeypatch.setattr(management, "LISTING_TTL_S", 0.0)  # the figures aged out
    await api.queues("name,messages_dlx")
    assert len(seen) == 2
