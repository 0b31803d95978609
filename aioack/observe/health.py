"""Health probes for orchestrators: liveness and readiness over HTTP.

``GET /livez``: 200 when the worker's event loop answers within
``loop_bound_s``; 503 when it does not (a task blocking the loop, a
deadlock): restart me. ``GET /readyz``: 200 while the worker consumes and
its broker connection works; 503 before it started, once it is stopping,
and while the broker is unreachable: send me no work.

The probe is a hook (it learns readiness from worker started, stopping,
connection lost and restored), and its server runs on a thread of its own
(the standard library's ``http.server``): a probe must get an answer even
when the event loop is stuck, which a server on that same loop could not
give. Why no web framework: two fixed routes need none.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aioack.hooks import ConnectionEvent, Hook, WorkerEvent
from aioack.urls import scrubbed

logger = logging.getLogger("aioack.health")

#: Probes answered at once; a connection past it is closed unanswered. A prober
#: needs one or two: this only keeps a flood of idle connections from making
#: a thread each.
MAX_OPEN_PROBES = 16
#: Seconds a connection may take to send its request and take the answer.
PROBE_IO_TIMEOUT_S = 2.0


class HealthProbe(Hook):
    """``probe = HealthProbe(); app.worker(hooks=[probe]); await probe.start(port=8080)``."""

    def __init__(self, *, loop_bound_s: float = 1.0) -> None:
        self.loop_bound_s = loop_bound_s
        self._started = False
        self._stopping = False
        self._broker_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what the worker tells it (hooks, on the loop's thread) ------------------

    def on_worker_started(self, event: WorkerEvent) -> None:
        self._started = True

    def on_worker_stopping(self, event: WorkerEvent) -> None:
        self._stopping = True

    def on_connection_lost(self, event: ConnectionEvent) -> None:
        self._broker_error = event.error or "unreachable"

    def on_connection_restored(self, event: ConnectionEvent) -> None:
        self._broker_error = None

    # -- the answers (on the server's thread) ----------------------------------

    def readiness(self) -> tuple[bool, str]:
        if self._stopping:
            return False, "stopping"
        if not self._started:
            return False, "starting"
        if self._broker_error is not None:
            return False, f"broker unreachable: {scrubbed(self._broker_error)}"
        return True, "ready"

    def liveness(self) -> tuple[bool, str]:
        loop = self._loop
        if loop is None or loop.is_closed():
            return False, "no event loop"
        answered = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop)
        try:
            answered.result(timeout=self.loop_bound_s)
        except TimeoutError:
            answered.cancel()
            return False, f"the event loop did not answer within {self.loop_bound_s:g}s"
        return True, "alive"

    # -- the server ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (the one asked for, or the one chosen for port 0)."""
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve /livez and /readyz on ``host:port`` until ``stop()``.

        Raises:
            OSError: the port cannot be bound (in use, not allowed).
        """
        self._loop = asyncio.get_running_loop()
        self._server = _ProbeServer((host, port), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aioack-health", daemon=True
        )
        self._thread.start()
        logger.info("health probes on http://%s:%d/livez and /readyz", host, self.port)

    async def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, server.shutdown)
        server.server_close()
        if thread is not None:
            await loop.run_in_executor(None, thread.join, 5.0)


class _ProbeServer(ThreadingHTTPServer):
    """A thread per probe, at most MAX_OPEN_PROBES at once; errors go to the log."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_OPEN_PROBES)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: the prober tries again next period
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints the traceback to stderr, past the log's format (a
        # prober that hung up mid-answer): a probe's failure is no news.
        logger.debug("health: a probe from %s failed", client_address, exc_info=True)


def _handler(probe: HealthProbe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = PROBE_IO_TIMEOUT_S  # an idle connection ends, and its thread with it

        def do_GET(self) -> None:
            if self.path == "/livez":
                ok, why = probe.liveness()
            elif self.path == "/readyz":
                ok, why = probe.readiness()
            else:
                self.send_error(404, "try /livez or /readyz")
                return
            body = (why + "\n").encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("health: " + format, *args)  # a probe every few seconds is no news

    return Handler
