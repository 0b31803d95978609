"""Serving a Prometheus registry over HTTP for as long as a worker runs.

prometheus_client's own server (``start_http_server``: a WSGI server on a
daemon thread) rather than an asyncio server of our own: it is the
maintained way (content negotiation for OpenMetrics, gzip, ``name[]``
filters), and a scrape answered off the event loop still answers while the
loop is busy with tasks. What a scrape reads is safe from another thread:
prometheus_client's values take their own locks, our gauges read one int,
and queue depths are one snapshot swapped whole (``depths``).

Since prometheus-client 0.20 it returns the server and its thread, so the
server stops with the worker: ``shutdown()`` ends the serving loop,
``server_close()`` frees the port (without it a restart in the same process
finds the port taken).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, start_http_server

from aioack.errors import ConfigurationError

#: Seconds to wait for the server thread to end once shut down.
STOP_TIMEOUT_S = 2.0


@contextlib.asynccontextmanager
async def serve_http(
    registry: CollectorRegistry, host: str, port: int
) -> AsyncIterator[tuple[str, int]]:
    """Serve ``registry`` at ``http://host:port/metrics`` while inside; yields (host, port).

    Raises:
        ConfigurationError: ``host:port`` cannot be listened on.
    """
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"metrics port {port} is out of range 0..65535")
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:  # in use, no such local address, not allowed
        raise ConfigurationError(
            f"metrics: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    try:
        yield host, int(server.server_address[1])
    finally:
        # shutdown() waits for the serving loop's next poll (up to 0.5 s): off the loop.
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        await asyncio.to_thread(thread.join, STOP_TIMEOUT_S)
