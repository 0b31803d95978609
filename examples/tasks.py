"""Tasks for a real broker. Run a worker for them with:

    python -m aioack worker examples.tasks:app --broker redis://127.0.0.1:6379/0

or set AIOACK_BROKER_URL instead of --broker. Enqueue runs with
``python examples/enqueue.py redis://127.0.0.1:6379/0``.

The App names no broker: the command line (``--broker`` or
AIOACK_BROKER_URL) picks it, so one module serves every environment.
"""

from __future__ import annotations

import asyncio
import logging

from aioack import App, Reject, TaskContext

app = App()

logger = logging.getLogger("examples.tasks")


class MailServerBusy(Exception):
    """The mail server asked us to come back later."""


# Explicit names: the worker imports this module as ``examples.tasks`` and a
# script may import it as ``tasks``; the name on the wire must not depend on that.
@app.task(name="emails.send", queue="emails", autoretry_for=(MailServerBusy,), time_limit=30)
async def send_email(to: str, subject: str) -> None:
    await asyncio.sleep(0.1)  # stands in for an SMTP call
    logger.info("sent %r to %s", subject, to)


@app.task(name="reports.build", time_limit=60)
async def build_report(ctx: TaskContext, report_id: int) -> str:
    if report_id < 0:
        # Bad input never gets better: dead-letter it now, with a reason.
        raise Reject(f"no report {report_id}")
    logger.info(
        "building report %d (attempt %d, delivery %d)", report_id, ctx.attempt, ctx.delivery_count
    )
    await asyncio.sleep(0.2)
    return f"report-{report_id}.pdf"


@app.task(name="images.thumbnail", time_limit=60)
def make_thumbnail(path: str, size: int = 128) -> None:
    # A plain def runs in a worker thread, never on the event loop. time_limit
    # cannot stop a thread: past it, the run is abandoned and counted as a timeout.
    logger.info("thumbnail of %s at %dpx", path, size)
