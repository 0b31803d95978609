"""An App whose queue holds at most 3 waiting messages: ``dlq replay`` must stop there.

The queue's name is unique to the test process (Redis and RabbitMQ are shared).
"""

import uuid

from aioack import App, QueueLimit

QUEUE = f"limited-{uuid.uuid4().hex[:12]}"
MAX_LENGTH = 3

app = App(queue_limits={QUEUE: QueueLimit(max_length=MAX_LENGTH)})


@app.task(queue=QUEUE, name="limited.noop")
async def noop() -> None:
    pass
