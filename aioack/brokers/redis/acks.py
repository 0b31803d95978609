"""Coalescing acks: every ack queued while one round trip is in flight goes in the next."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aioack.brokers.redis.client import Call, RedisIO
from aioack.brokers.redis.errors import translate_errors
from aioack.errors import AioackError, BrokerError


class AckBatcher:
    """Coalesces concurrent acks into one round trip.

    ``submit`` queues an ack and returns a future; a flush task started on
    the next loop iteration sends every ack queued so far in one pipeline
    (one fenced ACK script per stream and consumer). Acks queued while a
    flush is in flight go out in the next one.
    """

    def __init__(self, io: RedisIO) -> None:
        self._io = io
        self._pending: list[tuple[str, str, bytes, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, stream: str, consumer: str, entry_id: bytes) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, consumer, entry_id, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="aioack-redis-acks")
        return future

    async def in_flight(self) -> None:
        """Wait for the acks already queued to reach Redis (never raises)."""
        task = self._task
        if task is not None:
            await asyncio.wait([task])

    async def drain(self) -> None:
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._flush(batch)
        finally:
            self._task = None

    async def _flush(self, batch: list[tuple[str, str, bytes, asyncio.Future[bool]]]) -> None:
        groups: dict[tuple[str, str], list[tuple[bytes, asyncio.Future[bool]]]] = defaultdict(list)
        for stream, consumer, entry_id, future in batch:
            groups[(stream, consumer)].append((entry_id, future))
        calls: list[Call] = [
            ("ack", [stream], [self._io.group, consumer, *(i for i, _ in items)])
            for (stream, consumer), items in groups.items()
        ]
        try:
            with translate_errors("ack"):
                results = await self._io.eval_many(calls)
        except Exception as exc:
            # Every waiter gets an answer, whatever went wrong: an ack must never hang.
            error = exc if isinstance(exc, AioackError) else BrokerError(f"redis ack: {exc!r}")
            for _, _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for items, flags in zip(groups.values(), results, strict=True):
            for (_, future), flag in zip(items, flags, strict=True):
                if not future.done():
                    future.set_result(flag == ord("1"))
