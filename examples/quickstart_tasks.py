"""The quickstart's tasks, and a hook that says what became of each delivery.

The worker process imports this module (``examples.quickstart_tasks:app``);
examples/quickstart.py, the producer, imports it to enqueue. The App names
no broker: AIOACK_BROKER_URL, else the embedded default (sqlite://, a file).
"""

from __future__ import annotations

import asyncio
import time

from aioack import App, Hook, Retry, TaskContext
from aioack.hooks import SettledEvent

app = App()


class ServiceDown(Exception):
    """The remote service did not answer."""


# Names are explicit: what travels on the wire must not depend on how the
# module was imported (``examples.quickstart_tasks`` or ``quickstart_tasks``).
@app.task(name="send_welcome")
async def send_welcome(user_id: int, email: str) -> None:
    """An async task: it runs on the worker's event loop."""
    await asyncio.sleep(0.01)  # stands in for an HTTP call


@app.task(
    name="sync_crm",
    autoretry_for=(ServiceDown,),
    max_retries=4,
    retry_backoff=0.05,
    retry_backoff_max=0.2,
)
async def sync_crm(ctx: TaskContext, account: str) -> None:
    """Retried on ServiceDown with backoff; it works on its third attempt."""
    if ctx.attempt < 3:
        raise ServiceDown(f"CRM timed out for {account}")


@app.task(name="poll_report", max_retries=2)
async def poll_report(ctx: TaskContext, report_id: str) -> None:
    if ctx.attempt < 2:
        raise Retry(countdown=0.05, reason="report not ready")  # run again in 0.05 s


@app.task(name="resize_image")
def resize_image(path: str, width: int = 640) -> None:
    """A plain def: it runs in a worker thread, so it never blocks the loop."""
    time.sleep(0.02)


@app.task(name="charge_card", autoretry_for=(ConnectionError,), max_retries=1, retry_backoff=0.05)
async def charge_card(order_id: int) -> None:
    """Always fails: once its one retry is spent, it is dead-lettered, not dropped."""
    raise ConnectionError(f"payment gateway unreachable for order {order_id}")


class Narrate(Hook):
    """One line per settled delivery, printed by the worker process."""

    def on_settled(self, event: SettledEvent) -> None:
        what = {
            "ack": "done, acked",
            "retry": f"failed, retry in {event.delay_s:.2f}s",
            "dead_letter": f"dead-lettered ({event.reason}: {event.detail})",
        }.get(event.action, event.action)
        print(f"  worker: {event.task} attempt {event.attempt}: {what}", flush=True)
