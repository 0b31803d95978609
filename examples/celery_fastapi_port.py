"""A FastAPI + Celery tutorial application, ported to aioack.

The original (testdrivenio/fastapi-celery: ``project/worker.py`` and
``project/main.py``) has one task that sleeps ``type * 10`` seconds and
returns True, an endpoint that enqueues it and one that reports its state.
The walk-through of what changed is docs/celery-migration.md.

Run it with no server at all (the SQLite file ``aioack.db`` holds the queue
and the results, and a worker runs inside the web process)::

    uvicorn examples.celery_fastapi_port:app

or with Redis and a worker process of its own, as the original runs::

    export AIOACK_BROKER_URL=redis://127.0.0.1:6379/0 AIOACK_RESULTS_URL=redis://127.0.0.1:6379/0
    uvicorn examples.celery_fastapi_port:app
    python -m aioack worker examples.celery_fastapi_port:tasks

then::

    curl -X POST localhost:8000/tasks -H 'content-type: application/json' -d '{"type": 1}'
    curl localhost:8000/tasks/<task_id>
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI
from pydantic import BaseModel, Field

from aioack import App, State
from aioack.integrations.fastapi import AioackApp, aioack_lifespan

TASK_NAME = "create_task"


class TaskIn(BaseModel):
    # The original reads payload["type"] and calls int() on it; here the body is
    # validated, so a bad type is a 422 answer, not a 500 in the view.
    type: int = Field(ge=0, le=6)


class TaskCreated(BaseModel):
    task_id: str


class TaskStatus(BaseModel):
    task_id: str
    task_status: State
    task_result: bool | None = None


def create(
    broker_url: str,
    results_url: str,
    *,
    seconds_per_type: float = 10.0,
    embedded_worker: bool = False,
) -> tuple[App, FastAPI]:
    """The task App and the HTTP API over it."""
    tasks = App(broker_url, results=results_url)

    @tasks.task(name=TASK_NAME)
    async def create_task(task_type: int) -> bool:
        # time.sleep() in Celery's prefork worker; a coroutine here, so one
        # worker process runs many of these at once.
        await asyncio.sleep(task_type * seconds_per_type)
        return True

    api = FastAPI(lifespan=aioack_lifespan(tasks, worker=embedded_worker))

    @api.post("/tasks", status_code=201)
    async def run_task(payload: TaskIn) -> TaskCreated:
        result = await create_task.delay(payload.type)
        return TaskCreated(task_id=result.id)

    @api.get("/tasks/{task_id}")
    async def get_status(task_id: str, aioack: AioackApp) -> TaskStatus:
        record = await aioack.result(task_id, TASK_NAME).record()
        if record is None:  # not started yet (or unknown, or expired): Celery says PENDING too
            return TaskStatus(task_id=task_id, task_status=State.PENDING)
        result = record.result if record.state is State.SUCCESS else None
        return TaskStatus(task_id=task_id, task_status=record.state, task_result=result)

    return tasks, api


_broker = os.environ.get("AIOACK_BROKER_URL", "sqlite://")
tasks, app = create(
    _broker,
    os.environ.get("AIOACK_RESULTS_URL", "sqlite://"),
    embedded_worker=_broker.startswith(("sqlite:", "memory:")),
)
