"""Checked by mypy in CI (not run): a DjangoApp's tasks type delay_on_commit by their
ParamSpec, with and without decorator options.

Each ``type: ignore[...]`` marks a call mypy must reject (``warn_unused_ignores``).
"""

from typing import assert_type

from aioack import TaskContext
from aioack.integrations.django import DjangoApp, DjangoTask

app = DjangoApp("sqlite://")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="emails")
async def send(ctx: TaskContext, to: str) -> None:
    return None


def calls() -> None:
    task: DjangoTask[[int, int], int] = add
    task.delay_on_commit(3, 4)
    add.delay_on_commit(1, 2)
    add.delay_on_commit("1", 2)  # type: ignore[arg-type]
    send.delay_on_commit("a@example.com")
    send.delay_on_commit(1)  # type: ignore[arg-type]
    assert_type(add.delay_sync(1, 2).get_sync(timeout=1), int)
