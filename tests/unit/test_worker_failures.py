"""A worker whose own loop hits a bug stops and says so; it never hangs silently."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from aioack import App
from aioack.brokers import Consumer, Delivery, MemoryBroker


class _BrokenConsumer(Consumer):
    async def get(self, timeout_s: float) -> Delivery | None:
        raise RuntimeError("bug in a consumer")

    async def cancel(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _BrokenBroker(MemoryBroker):
    async def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        return _BrokenConsumer()


async def test_a_crashed_receive_loop_stops_the_worker_with_the_error() -> None:
    app = App(broker=_BrokenBroker())
    with pytest.raises(RuntimeError, match="bug in a consumer"):
        await app.worker(["q"]).run()
