"""dramatiq: ``dramatiq benchmarks.peers.apps.dramatiq_app --processes 1 --threads 8``.

dramatiq acks after the run (its only mode); no retries for the no-op.
"""

import os

import dramatiq

from benchmarks.peers import marker

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-dramatiq")
if URL.startswith("amqp"):
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker: dramatiq.Broker = RabbitmqBroker(url=URL, confirm_delivery=True)
else:
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_noop", queue_name=QUEUE, max_retries=0)
def noop() -> None:
    if marker.WAITS:  # the I/O-bound scenario: a sleep in the worker's thread
        marker.wait_sync()
    marker.done()
