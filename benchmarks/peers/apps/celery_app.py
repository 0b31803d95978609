"""Celery: ``celery -A benchmarks.peers.apps.celery_app worker --pool solo``, late ack.

The I/O-bound scenario runs it with ``--pool threads -c 500`` (BENCH_THREADS):
Celery prefetches multiplier x pool size, so the multiplier is the prefetch
over the pool size.
"""

import os

from celery import Celery

from benchmarks.peers import marker

QUEUE = os.environ.get("BENCH_QUEUE", "bench-celery")
app = Celery("bench", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9"))
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,  # its reliable mode: ack after the run
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=max(
        1, int(os.environ.get("BENCH_PREFETCH", "100")) // int(os.environ.get("BENCH_THREADS", "1"))
    ),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    if marker.WAITS:  # the I/O-bound scenario: a sleep in the worker's thread
        marker.wait_sync()
    marker.done()
