"""Periodic tasks: schedules declared with ``app.periodic(...)``, fired once per tick.

See docs/periodic.md.
"""

from aioack.periodic.schedule import MAX_CATCH_UP_TICKS, Missed, Schedule
from aioack.periodic.scheduler import DEFAULT_TICK_LEASE_S, Scheduler

__all__ = ["DEFAULT_TICK_LEASE_S", "MAX_CATCH_UP_TICKS", "Missed", "Schedule", "Scheduler"]
