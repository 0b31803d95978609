"""Checked by mypy in CI (not run): delay() is typed by the task's ParamSpec.

Each ``type: ignore[...]`` below marks a call mypy must reject; with
``warn_unused_ignores`` (strict), mypy fails if it ever stops rejecting one.
"""

from aioack import App, TaskContext

app = App()


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="ctx")
async def with_context(ctx: TaskContext, name: str) -> None:
    return None


async def calls() -> None:
    await add.delay(1, 2)
    await add.delay(1, y=2)
    await add.delay("1", 2)  # type: ignore[arg-type]
    await add.delay(1)  # type: ignore[call-arg]
    await with_context.delay("ada")
    await with_context.delay(3)  # type: ignore[arg-type]
