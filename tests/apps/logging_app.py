"""Tasks for the log tests: one of each fate, and a redactor.

The broker comes from the command line (``--broker``).
"""

from typing import Any

from aioack import App, Retry, TaskContext

app = App()


@app.task(name="logs.ok", queue="logs")
async def ok(token: str) -> str:
    return f"done with {token}"


@app.task(name="logs.flaky", queue="logs", max_retries=2, retry_backoff=0.01)
async def flaky(ctx: TaskContext) -> None:
    if ctx.attempt == 1:
        raise Retry(countdown=0.01)


@app.task(name="logs.broken", queue="logs", max_retries=0)
async def broken() -> None:
    raise ValueError("line one\nforged INFO line two")


def redact(task: str, what: str, value: Any) -> Any:
    """Keep the shape, hide every string: what a careful service would log."""
    if isinstance(value, dict):
        return {k: redact(task, what, v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(task, what, v) for v in value]
    return "***" if isinstance(value, str) else value
