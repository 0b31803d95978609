"""Enqueue a few runs of the tasks in examples/tasks.py.

    python examples/enqueue.py [BROKER_URL]     # default redis://127.0.0.1:6379/0

Then run a worker on the same broker:

    python -m aioack worker examples.tasks:app --broker redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

# Run as a script, Python puts examples/ on the path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.tasks import app, build_report, make_thumbnail, send_email

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


async def main(broker_url: str) -> None:
    app.use_broker(broker_url)
    async with app:
        results = [
            await send_email.delay("ada@example.com", "Welcome"),
            await build_report.delay(7),
            await build_report.delay(-1),  # rejected by the task: dead-lettered
            await make_thumbnail.apply_async(args=("cat.png",), kwargs={"size": 64}, countdown=5),
        ]
    for result in results:
        print(f"enqueued {result.task_name}[{result.id}] on queue {result.queue!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_BROKER_URL))
