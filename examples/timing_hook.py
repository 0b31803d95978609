"""A hook that times every run and counts what each delivery became.

Run it from the repository root (no server needed):

    python examples/timing_hook.py

Register the same hook on a real worker with
``python -m aioack worker myproj.tasks:app --hook examples.timing_hook:Timing``.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

from aioack import App, Hook
from aioack.hooks import FinishedEvent, SettledEvent
from aioack.testing import run_until_idle


class Timing(Hook):
    """Durations of runs by task, and settles by action: what a metrics hook keeps."""

    def __init__(self) -> None:
        self.durations_s: defaultdict[str, list[float]] = defaultdict(list)
        self.settled: Counter[str] = Counter()

    def on_finished(self, event: FinishedEvent) -> None:
        # Synchronous and quick: it runs on the worker's event loop.
        self.durations_s[event.task].append(event.duration_s)

    def on_settled(self, event: SettledEvent) -> None:
        self.settled[event.action if not event.reason else f"{event.action} ({event.reason})"] += 1


timing = Timing()
app = App("memory://", hooks=[timing])  # one process: the in-memory broker fits


@app.task(queue="default", name="resize")
async def resize(width: int) -> int:
    await asyncio.sleep(width / 10_000)
    return width


@app.task(queue="default", name="broken", max_retries=0)
async def broken() -> None:
    raise ValueError("always fails")


async def main() -> None:
    for width in (100, 200, 300):
        await resize.delay(width)
    await broken.delay()
    await run_until_idle(app)
    for task, durations in sorted(timing.durations_s.items()):
        print(f"{task}: {len(durations)} runs, longest {max(durations) * 1000:.0f} ms")
    for action, count in sorted(timing.settled.items()):
        print(f"{action}: {count}")


if __name__ == "__main__":
    asyncio.run(main())
