"""Celery: ``celery -A benchmarks.peers.apps.celery_app worker --pool solo``, late ack."""

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
    worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "100")),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    marker.done()
