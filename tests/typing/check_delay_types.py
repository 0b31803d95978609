"""Checked by mypy in CI (not run): delay() is typed by the task's ParamSpec.

Each ``type: ignore[...]`` below marks a call mypy must reject; with
``warn_unused_ignores`` (strict), mypy fails if it ever stops rejecting one.
"""

from typing import assert_type

from pydantic import BaseModel

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


class Receipt(BaseModel):
    total: int


@app.task
async def pay(amount: int) -> Receipt:
    return Receipt(total=amount)


@app.task
def sync_add(x: int, y: int) -> int:
    return x + y


async def results() -> None:
    receipt = await (await pay.delay(3)).get(timeout=1)
    assert_type(receipt, Receipt)
    assert_type(await (await add.delay(1, 2)).get(), int)
    assert_type(await (await sync_add.delay(1, 2)).get(), int)
    total: str = await (await add.delay(1, 2)).get()  # type: ignore[assignment]
    print(total)


async def not_awaited() -> None:
    # mypy's unused-coroutine error code (on by default) catches a delay() left
    # un-awaited: it publishes nothing.
    add.delay(1, 2)  # type: ignore[unused-coroutine]
    add.apply_async((1, 2))  # type: ignore[unused-coroutine]


def sync_calls() -> None:
    handle = add.delay_sync(1, 2)
    assert_type(handle.get_sync(timeout=1), int)
    assert_type(pay.apply_async_sync((3,), countdown=1).get_sync(), Receipt)
    add.delay_sync("1", 2)  # type: ignore[arg-type]
