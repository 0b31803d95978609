"""FastAPI embedding: a lifespan that connects the App, and a dependency to reach it.

For example:

    tasks = App("redis://127.0.0.1:6379/0", results="redis://127.0.0.1:6379/0")
    api = FastAPI(lifespan=aioack_lifespan(tasks))

    @api.post("/jobs")
    async def enqueue(aioack: AioackApp) -> dict[str, str]:
        return {"id": (await some_task.delay()).id}

With ``worker=True`` a Worker runs in the server's own event loop (the
embedded mode: one process, no separate worker). It installs no signal
handlers: uvicorn owns SIGTERM/SIGINT and runs the lifespan's exit, where the
worker drains: prefetched deliveries are handed back at once, running tasks
get ``shutdown_timeout`` seconds, then are cancelled and handed back.

With ``metrics`` (an ``aioack.observe.metrics.PrometheusMetrics``) the
embedded worker reports to it, and queue depths are read for as long as the
server runs; serve them with ``api.mount("/metrics", metrics.asgi_app())``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request

from aioack.app import App
from aioack.errors import ConfigurationError

if TYPE_CHECKING:  # prometheus-client is an extra: imported only by whoever passes metrics
    from aioack.observe.metrics import PrometheusMetrics

logger = logging.getLogger("aioack.integrations.fastapi")

#: Where the lifespan leaves the App, on ``FastAPI.state``.
STATE_KEY = "aioack_app"

Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


def aioack_lifespan(
    app: App,
    *,
    worker: bool = False,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    shutdown_timeout: float = 10.0,
    metrics: PrometheusMetrics | None = None,
) -> Lifespan:
    """A FastAPI ``lifespan`` that connects ``app`` (and, with ``worker``, runs a worker).

    ``shutdown_timeout`` (seconds) should stay below the server's own
    graceful-shutdown timeout, so running tasks are handed back before the
    process ends. ``metrics`` sees the embedded worker's events and exports
    the depths of ``queues`` (default: the tasks' queues).
    """

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        setattr(api.state, STATE_KEY, app)
        await app.connect()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if metrics is not None:
                    watched = list(queues) if queues else (app.queues() or ["default"])
                    await stack.enter_async_context(metrics.queue_depths(app.broker, watched))
                if worker:
                    embedded = app.worker(
                        queues,
                        concurrency=concurrency,
                        shutdown_timeout=shutdown_timeout,
                        hooks=[metrics] if metrics is not None else [],
                    )
                    await stack.enter_async_context(embedded)
                    logger.info("embedded worker started in the server's event loop")
                yield
        finally:
            await app.aclose()

    return lifespan


def get_app(request: Request) -> App:
    """FastAPI dependency: the App the lifespan connected.

    Raises:
        ConfigurationError: the FastAPI app was made without ``aioack_lifespan``.
    """
    app: Any = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(app, App):
        raise ConfigurationError("no aioack App here: use FastAPI(lifespan=aioack_lifespan(app))")
    return app


#: Annotate a handler parameter with this to receive the App.
AioackApp = Annotated[App, Depends(get_app)]
