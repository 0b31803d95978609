"""The worker command's garbage-collector setting: freeze what start-up made.

A worker process keeps its imports, its App and its connections for its
whole life, and CPython's full (generation 2) collections walk all of them
again and again while tasks churn through short-lived objects: measured on
Redis, those walks were about 10 % of a no-op task's CPU (15 ms each, every
~3,000 tasks). ``gc.freeze()`` once the worker consumes moves every object
alive at that moment into a generation the collector never walks; new
objects are collected as before. Only the command does this: an App
embedded in a service shares the process, whose collector is the service's
to set (it can call ``gc.freeze()`` itself; docs/workers.md).
"""

from __future__ import annotations

import gc

from aioack.hooks import WorkerEvent


class FreezeAfterStart:
    """A hook: collect once, then freeze, when the worker starts consuming."""

    def on_worker_started(self, event: WorkerEvent) -> None:
        gc.collect()
        gc.freeze()
