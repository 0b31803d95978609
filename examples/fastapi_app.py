"""A FastAPI service that enqueues tasks and reports their results.

Run it with no servers at all (embedded broker and results, a worker in the
same process)::

    uvicorn examples.fastapi_app:app

or against Redis, with workers in other processes::

    export AIOACK_BROKER_URL=redis://127.0.0.1:6379/0 AIOACK_RESULTS_URL=redis://127.0.0.1:6379/1
    uvicorn examples.fastapi_app:app
    python -m aioack worker examples.fastapi_app:tasks

then::

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
        -d '{"order_id": "o-1", "cents": 1250}'
    curl localhost:8000/orders/<task_id>
    curl -L localhost:8000/metrics   # Prometheus: the embedded worker's tasks, queue depth

Settings (read here, at import, because this module *is* the service's
configuration): AIOACK_BROKER_URL and AIOACK_RESULTS_URL (default
``memory://``), AIOACK_EMBEDDED_WORKER (``1``/``0``; default ``1`` with the
memory broker), AIOACK_EXAMPLE_QUEUE (default ``orders``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from aioack import App, State
from aioack.integrations.fastapi import AioackApp, aioack_lifespan
from aioack.observe.metrics import PrometheusMetrics

TASK_NAME = "orders.make_receipt"


class OrderIn(BaseModel):
    order_id: str = Field(min_length=1, max_length=100)
    cents: int = Field(ge=0)
    #: Seconds the task pretends to work (to watch the states change).
    work_s: float = Field(default=0.0, ge=0, le=60)


class Receipt(BaseModel):
    order_id: str
    cents: int
    issued_at: dt.datetime


class Enqueued(BaseModel):
    task_id: str


class Status(BaseModel):
    task_id: str
    state: State
    result: Receipt | None = None
    error: str | None = None


def create(
    broker_url: str, results_url: str, *, queue: str = "orders", embedded_worker: bool = False
) -> tuple[App, FastAPI]:
    """The task App and the HTTP API over it."""
    tasks = App(broker=broker_url, results=results_url)

    @tasks.task(queue=queue, name=TASK_NAME, idempotent=True)
    async def make_receipt(order_id: str, cents: int, work_s: float = 0.0) -> Receipt:
        await asyncio.sleep(work_s)
        return Receipt(order_id=order_id, cents=cents, issued_at=dt.datetime.now(dt.UTC))

    # Metrics of the embedded worker (if any) and the queue's depth, at /metrics.
    metrics = PrometheusMetrics(task_names=tasks.tasks)
    lifespan = aioack_lifespan(tasks, worker=embedded_worker, metrics=metrics)
    api = FastAPI(title="aioack example", lifespan=lifespan)
    api.mount("/metrics", metrics.asgi_app())

    @api.post("/orders", status_code=202)
    async def enqueue(order: OrderIn) -> Enqueued:
        # The order id is the task id: posting the same order twice runs it once.
        result = await make_receipt.apply_async(
            (order.order_id, order.cents, order.work_s), task_id=f"order-{order.order_id}"
        )
        return Enqueued(task_id=result.id)

    @api.get("/orders/{task_id}")
    async def status(task_id: str, aioack: AioackApp) -> Status:
        record = await aioack.result(task_id, TASK_NAME).record()
        if record is None:  # queued and not started yet, or expired, or never sent
            return Status(task_id=task_id, state=State.PENDING)
        body: dict[str, Any] = {"task_id": task_id, "state": record.state}
        if record.state is State.SUCCESS:
            body["result"] = record.result
        elif record.error_type is not None:
            body["error"] = f"{record.error_type}: {record.error_message}"
        return Status.model_validate(body)

    return tasks, api


# No servers needed: the embedded default (one SQLite file, durable) for the
# queue and the results, and a worker inside the service. Point both at Redis
# (or the queue at RabbitMQ) to run workers as their own processes.
_broker = os.environ.get("AIOACK_BROKER_URL", "sqlite://")
_embedded = _broker.startswith(("sqlite:", "memory:"))
tasks, app = create(
    _broker,
    os.environ.get("AIOACK_RESULTS_URL", "sqlite://"),
    queue=os.environ.get("AIOACK_EXAMPLE_QUEUE", "orders"),
    embedded_worker=os.environ.get("AIOACK_EMBEDDED_WORKER", "1" if _embedded else "0") == "1",
)
