"""taskiq: ``taskiq worker benchmarks.peers.apps.taskiq_app:broker --ack-type when_executed``.

Redis: taskiq-redis's RedisStreamBroker (consumer groups, acked after the
run; the only taskiq Redis broker that acks). RabbitMQ: taskiq-aio-pika.
"""

import os

from benchmarks.peers import marker

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-taskiq")
PREFETCH = int(os.environ.get("BENCH_PREFETCH", "100"))
if URL.startswith("amqp"):
    from taskiq_aio_pika import AioPikaBroker, Queue, QueueType

    # A quorum queue of its own per run, as aioack's and the raw loop's.
    queues = [Queue(name=QUEUE, type=QueueType.QUORUM)]
    broker = AioPikaBroker(URL, task_queues=queues, qos=PREFETCH)
else:
    from taskiq_redis import RedisStreamBroker

    # consumer_id="0": the group also reads what was queued before it existed (the backlog).
    broker = RedisStreamBroker(URL, queue_name=QUEUE, consumer_id="0", xread_count=PREFETCH)


@broker.task(task_name="bench.noop")
async def noop() -> None:
    if marker.WAITS:  # the I/O-bound and memory scenarios
        await marker.wait()
    marker.done()
