"""The tasks of Celery's Django example (``examples/django/demoapp/tasks.py``), ported.

The Django-free ones, as they are; the two that use the ORM (``count_widgets``,
``rename_widget``) and the project's ``proj/celery.py`` are shown in
docs/celery-migration.md. Run the arithmetic ones through a worker::

    python examples/celery_django_tasks.py
"""

from __future__ import annotations

import asyncio

from aioack import App, TaskContext

# Celery: app = Celery("proj"); app.config_from_object("django.conf:settings", namespace="CELERY")
# Here the URLs come from AIOACK_BROKER_URL / AIOACK_RESULTS_URL, or are given:
app = App("memory://", results="memory://")


# @shared_task binds to "the current app"; aioack has no global app: tasks are
# registered on the App they are given, imported by whoever needs them.
@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


# Celery: autoretry_for=(Exception,), retry_kwargs={"max_retries": 2, "countdown": 10 * 60}
# A fixed 10-minute wait is retry_backoff=False with default_retry_delay.
@app.task(
    autoretry_for=(Exception,), max_retries=2, retry_backoff=False, default_retry_delay=10 * 60
)
def error_task() -> None:
    raise Exception("Test error")


# Celery: retry_backoff=5, retry_jitter=False, retry_kwargs={"max_retries": 3}
# The same names and meaning: 5 s, 10 s, 20 s.
@app.task(autoretry_for=(Exception,), retry_backoff=5, retry_jitter=False, max_retries=3)
def error_backoff_test(ctx: TaskContext) -> str:
    # bind=True's self.request is a TaskContext parameter: ctx.id, ctx.attempt...
    raise Exception(f"Test error (attempt {ctx.attempt})")


async def main() -> None:
    async with app:
        results = [await add.delay(2, 3), await mul.delay(4, 5), await xsum.delay([1, 2, 3])]
        async with app.worker():
            print([await result.get(timeout=10) for result in results])


if __name__ == "__main__":
    asyncio.run(main())
