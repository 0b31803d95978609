"""Fault 8 end to end: a task cut by time_limit mid Redis command leaves the
shared connections healthy; every later command gets its own answer."""

from __future__ import annotations

import asyncio

from aioack import App
from aioack.brokers import Broker
from aioack.testing import run_until_idle
from tests.conftest import make_broker
from tests.support import unique


async def test_time_limit_cancelling_a_task_mid_command_leaves_redis_healthy() -> None:
    broker: Broker = make_broker("redis")
    busy, marker = unique("busy"), unique("marker")
    app = App(broker=broker)
    cancelled = asyncio.Event()
    await broker.connect()
    try:
        await broker.declare([busy, marker])
        for n in range(3):  # a known, distinct answer for later checks
            await broker.publish(marker, b"{}", message_id=f"m{n}", delay_s=60)

        @app.task(queue=busy, time_limit=0.05, max_retries=0)
        async def hammer() -> None:
            try:
                while True:  # Redis commands on the shared pool, cut mid-flight
                    await asyncio.gather(*(broker.stats(marker) for _ in range(20)))
            except asyncio.CancelledError:
                cancelled.set()
                raise

        for _ in range(5):
            await hammer.delay()
        await run_until_idle(app, [busy])
        assert cancelled.is_set()
        reasons = {d.reason for d in await broker.dead_letters(busy)}
        assert reasons == {"timeout"}
        for _ in range(50):  # each reply must still match its own command
            marker_stats, busy_stats = await asyncio.gather(
                broker.stats(marker), broker.stats(busy)
            )
            assert (marker_stats.delayed, marker_stats.ready) == (3, 0)
            assert (busy_stats.dead, busy_stats.pending) == (5, 0)
    finally:
        await broker.delete([busy, marker])
        await broker.aclose()
