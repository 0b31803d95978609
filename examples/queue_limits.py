"""Queue limits: a full queue refuses, or holds a publish until a worker makes room.

    python examples/queue_limits.py

No server needed (the in-process memory broker). It prints:

    queued 3, then QueueFull: queue 'emails' is full (max_length=3): message not enqueued
    watermark: emails length reached 2
    a waiting publish got in once the worker made room
    sent 4 emails
"""

from __future__ import annotations

import asyncio

from aioack import App, QueueFull, QueueLimit
from aioack.hooks import Hook, WatermarkEvent


class Watch(Hook):
    def on_watermark(self, event: WatermarkEvent) -> None:
        if event.above:  # a worker counts its queues when it starts, then every 5 s
            print(f"watermark: {event.queue} {event.measure} reached {event.watermark}")


app = App(
    "memory://",
    queue_limits={"emails": QueueLimit(max_length=3, length_watermark=2)},
    hooks=[Watch()],
)
sent: list[str] = []
one_sent = asyncio.Event()


@app.task(queue="emails")
async def send_email(to: str) -> None:
    await asyncio.sleep(0.05)  # sending takes a while
    sent.append(to)
    one_sent.set()


async def main() -> None:
    async with app:
        queued = 0
        try:
            for n in range(10):
                await send_email.delay(f"user{n}@example.com")
                queued += 1
        except QueueFull as exc:
            print(f"queued {queued}, then QueueFull: {exc}")

        # The same queue, now holding a publish until there is room.
        limit = QueueLimit(max_length=3, when_full="wait", length_watermark=2)
        app.broker.use_limits({"emails": limit})
        async with asyncio.TaskGroup() as group:
            waiting = group.create_task(send_email.delay("late@example.com"))
            async with app.worker(["emails"], concurrency=1, prefetch=1):
                await waiting
                print("a waiting publish got in once the worker made room")
                while len(sent) < queued + 1:
                    await one_sent.wait()
                    one_sent.clear()
        print(f"sent {len(sent)} emails")


if __name__ == "__main__":
    asyncio.run(main())
