"""The worker: consume, run under a concurrency bound, settle each delivery once.

It gets what it needs and nothing more: the tasks to look up by name, a
broker to move and settle deliveries (``BrokerCore``), a result store, its
settings and hooks; never the App (``App.worker()`` builds one).
"""

from aioack.worker.settings import CLOSE_ALLOWANCE_S, Redactor, WorkerSettings
from aioack.worker.worker import Worker

__all__ = ["CLOSE_ALLOWANCE_S", "Redactor", "Worker", "WorkerSettings"]
