"""The worker's watermark sampler: counts its queues now and then, reports crossings.

Why the worker samples, and not the producer or the broker: a broker tells
no one when a queue grows, and a producer would pay a count per publish.
A worker runs all the time, next to the queues it consumes, and one count
per queue every ``INTERVAL_S`` costs nothing. Every worker of a queue
samples it, so each reports the crossing it sees (count them per worker,
or take the max, in a metric).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aioack.brokers.base import BrokerAdmin, BrokerCore
from aioack.errors import BrokerError
from aioack.hooks import Hooks, WatermarkEvent
from aioack.limits import Watermarks

logger = logging.getLogger("aioack.worker")

#: Seconds between two counts of a queue that has a watermark.
INTERVAL_S = 5.0


def watched(broker: BrokerCore, queues: Sequence[str]) -> Watermarks | None:
    """The watermarks of ``queues``, or None when there are none (or no way to count)."""
    if not isinstance(broker, BrokerAdmin):
        return None
    marks = Watermarks({q: lim for q, lim in broker.limits.items() if q in queues})
    return marks if marks.queues else None


async def sample(broker: BrokerAdmin, marks: Watermarks, hooks: Hooks) -> None:
    """Count each watched queue every INTERVAL_S and report crossings, until cancelled.

    A count that fails (the broker is down) is skipped: the receive loop
    reports the outage; a crossing is reported at the next count that works.
    """
    while True:
        for queue in marks.queues:
            try:
                stats = await broker.stats(queue)
            except BrokerError as exc:
                logger.debug("watermarks: could not count %s: %s", queue, exc)
                continue
            for event in marks.observe(
                queue, length=stats.ready + stats.delayed, unacked=stats.unacked
            ):
                report(event, hooks)
        await asyncio.sleep(INTERVAL_S)


def report(event: WatermarkEvent, hooks: Hooks) -> None:
    if event.above:
        limit = f" (limit {event.limit})" if event.limit is not None else ""
        logger.warning(
            "queue %s %s %d reached its watermark %d%s",
            event.queue,
            event.measure,
            event.count,
            event.watermark,
            limit,
        )
    else:
        logger.info(
            "queue %s %s %d is back below its watermark %d",
            event.queue,
            event.measure,
            event.count,
            event.watermark,
        )
    if hooks.on_watermark:
        hooks.emit(hooks.on_watermark, event)
