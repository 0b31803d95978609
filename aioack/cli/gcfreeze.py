"""The worker command's garbage-collector setting: freeze what start-up made.

A worker process keeps its imports, its App and its connections for its
whole life, and CPython's full (generation 2) collections walk all of them
again and again while tasks churn through short-lived objects: measured on
Redis, those walks were about 10 % of a no-op task's CPU (15 ms each, every
~3,000 tasks). ``gc.freeze()`` once the worker consumes moves every object
alive at that moment into a generation the collector never walks; new
objects are collected as before. It also lets 10,000 allocations (not
CPython's 700) pass between young-generation collections: a no-op task
allocates a few dozen objects, so the default collects every ~20 tasks
(about 5 % of its CPU); cyclic garbage waits a little longer, a few MB at
most. Only the command does this: an App
embedded in a service shares the process, whose collector is the service's
to set (it can call ``gc.freeze()`` itself; docs/workers.md).
"""

from __future__ import annotations

import gc

from aioack.hooks import WorkerEvent

#: Allocations between young-generation collections in a worker process.
YOUNG_THRESHOLD = 10_000


class FreezeAfterStart:
    """A hook: collect once, freeze, and space out young collections when the worker
    starts consuming."""

    def on_worker_started(self, event: WorkerEvent) -> None:
        gc.collect()
        gc.freeze()
        young, older, oldest = gc.get_threshold()
        gc.set_threshold(max(YOUNG_THRESHOLD, young), older, oldest)
