"""A lost channel stops its runs at once, and a redelivered copy never overlaps them.

The lease check is slowed to 5 s here, so only the consumer's own notice of
the closed channel can cancel the run within the 1 s outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from aioack import App, TaskContext
from aioack.brokers.rabbitmq import RabbitMQBroker
from tests.proxy import TcpProxy
from tests.support import wait_until

pytestmark = pytest.mark.integration

OUTAGE_S = 1.0
#: Longer than the outage plus the reconnect: the redelivery arrives while
#: the first run is still in its cleanup.
CLEANUP_S = 1.8


async def test_a_closed_channel_cancels_its_run_at_once_and_the_copy_waits_for_it(
    make_rabbit: Callable[..., RabbitMQBroker],
    rabbit: RabbitMQBroker,
    queue_name: str,
    proxy: TcpProxy,
) -> None:
    broker = make_rabbit(proxy.url(), lease_check_interval_s=5.0)
    app = App(broker=broker)
    runs: list[dict[str, float]] = []

    @app.task(queue=queue_name)
    async def work(ctx: TaskContext) -> None:
        run = {"start": time.monotonic()}
        runs.append(run)
        try:
            if ctx.delivery_count == 1:
                await asyncio.sleep(30)
        except asyncio.CancelledError:
            run["cancelled"] = time.monotonic()
            await asyncio.sleep(CLEANUP_S)  # a slow cleanup, then the cancel goes on
            raise
        finally:
            run["end"] = time.monotonic()

    try:
        await work.delay()
        async with app.worker([queue_name], concurrency=2):
            await wait_until(lambda: len(runs) == 1, timeout=10, message="the first run")
            proxy.refuse()
            await asyncio.sleep(OUTAGE_S)
            reconnect_allowed = time.monotonic()
            proxy.accept()
            await wait_until(lambda: len(runs) == 2 and "end" in runs[1], timeout=15)
        first, second = runs
        # Cancelled while the broker was still unreachable: not at the next lease check.
        assert first["cancelled"] < reconnect_allowed, "the run went on after its channel closed"
        # The redelivered copy started only once the first run had ended.
        assert second["start"] >= first["end"], (
            f"runs overlapped by {first['end'] - second['start']:.3f}s"
        )
        assert (await rabbit.stats(queue_name)).pending == 0
    finally:
        await app.aclose()
