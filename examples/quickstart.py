"""A tour of aioack on the embedded, in-process broker: no server needed.

Run it from the repository root:

    python examples/quickstart.py        # add -v to see the worker's log lines

It defines a few tasks, enqueues some runs, runs a worker until the queue is
empty, then prints what happened, including a dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from aioack import App, Retry, TaskContext

# No broker given: the App uses the embedded in-process broker (memory://).
# It keeps nothing on disk; it is for scripts, tests and this tour.
app = App()

QUEUE = "default"
#: What the tasks did, in order, for the summary at the end.
events: list[str] = []
#: Attempts before the flaky service "comes back".
flaky_attempts: dict[str, int] = {}


class ServiceDown(Exception):
    """The remote service did not answer (the flaky task raises it)."""


@app.task
async def send_welcome(user_id: int, email: str) -> None:
    """An async task: it runs on the worker's event loop."""
    await asyncio.sleep(0.01)  # stands in for an HTTP call
    events.append(f"welcome mail sent to user {user_id} <{email}>")


@app.task(autoretry_for=(ServiceDown,), max_retries=4, retry_backoff=0.05, retry_backoff_max=0.2)
async def sync_crm(account: str) -> None:
    """Retried on ServiceDown, with exponential backoff from 0.05 s (full jitter)."""
    flaky_attempts[account] = flaky_attempts.get(account, 0) + 1
    if flaky_attempts[account] < 3:
        raise ServiceDown(f"CRM timed out for {account}")
    events.append(f"CRM synced for {account} after {flaky_attempts[account]} attempts")


@app.task(max_retries=2)
async def poll_report(ctx: TaskContext, report_id: str) -> None:
    """Asks for its own context: which attempt this is, and how it was delivered."""
    if ctx.attempt < 2:
        # Not ready yet: run again in 0.05 s (countdown overrides the backoff).
        raise Retry(countdown=0.05, reason="report not ready")
    events.append(f"report {report_id} fetched on attempt {ctx.attempt} (task id {ctx.id})")


@app.task
def resize_image(path: str, width: int = 640) -> None:
    """A plain def: it runs in a worker thread, so it never blocks the loop."""
    time.sleep(0.02)  # stands in for CPU or blocking I/O
    events.append(f"resized {path} to {width}px")


@app.task(autoretry_for=(ConnectionError,), max_retries=1, retry_backoff=0.05)
async def charge_card(order_id: int) -> None:
    """Always fails: once its one retry is spent, it is dead-lettered, not dropped."""
    raise ConnectionError(f"payment gateway unreachable for order {order_id}")


async def main() -> None:
    # -v shows one log line per task start and settle (and failures with tracebacks).
    verbose = "-v" in sys.argv[1:]
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    async with app:
        # delay() checks the arguments against the signature, then publishes.
        await send_welcome.delay(42, "ada@example.com")
        await sync_crm.delay("acme")
        await poll_report.delay("q3-sales")
        await resize_image.delay("cat.png", width=320)
        # apply_async() takes options: this run becomes ready in 0.1 s.
        await send_welcome.apply_async(args=(7, "grace@example.com"), countdown=0.1)
        await charge_card.delay(1001)

        # A wrong argument fails here, at the call site, not later in a worker.
        try:
            await send_welcome.delay("not a number", "bob@example.com")  # type: ignore[arg-type]
        except TypeError as exc:
            print(f"refused at the call site: {exc}\n")

        # burst=True: return once the queue holds nothing ready, delayed or running.
        started = time.monotonic()
        await app.worker(concurrency=4).run(burst=True)
        print(f"worker drained the queue in {time.monotonic() - started:.2f}s:")
        for line in events:
            print(f"  - {line}")

        # charge_card failed for good: it sits in the dead-letter store, with why.
        for letter in await app.broker.dead_letters(QUEUE):
            print(f"\ndead letter: reason={letter.reason} attempt={letter.attempt}")
            print(f"  error: {letter.error}")
            print(f"  detail: {letter.detail}")
            last_line = (letter.traceback or "").strip().splitlines()[-1:]
            print(f"  traceback ends with: {last_line[0] if last_line else '-'}")


if __name__ == "__main__":
    asyncio.run(main())
