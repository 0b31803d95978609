"""Coalesced acks for one channel generation: ``basic.ack(multiple=True)`` over contiguous tags.

On a quorum queue every ack frame is a Raft command, so one ``multiple`` ack
for a run of settled deliveries costs RabbitMQ far less than one per message.
Acks never wait on each other: while one flush is writing, later acks gather
and go out together in the next one; an idle channel acks at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class ChannelAcks:
    """Tracks one channel's unsettled tags (in delivery order) and coalesces their acks."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel  # the aiormq channel: acks go to no other
        #: Tags delivered on this channel, oldest first; settled ones are dropped lazily.
        self._outstanding: deque[int] = deque()
        #: Tags settled by other means (reject, or acked singly) still in ``_outstanding``.
        self._gone: set[int] = set()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._flushing: asyncio.Task[None] | None = None

    def delivered(self, tag: int) -> None:
        self._outstanding.append(tag)

    def settled_elsewhere(self, tag: int) -> None:
        """A reject/nack for ``tag`` was sent: a later multiple-ack may step over it."""
        self._gone.add(tag)

    async def ack(self, tag: int) -> None:
        """Ack ``tag``; returns once its frame (alone or coalesced) was written.

        Raises:
            the client's error when the channel is closed (the caller translates it).
        """
        future = asyncio.get_running_loop().create_future()
        self._pending[tag] = future
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_while_pending())
        await future

    async def _flush_while_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                await self._send(batch)
            except BaseException as exc:
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for future in batch.values():
                if not future.done():
                    future.set_result(None)

    async def _send(self, batch: dict[int, asyncio.Future[None]]) -> None:
        """One multiple-ack for the settled prefix, single acks for the rest."""
        outstanding, gone = self._outstanding, self._gone
        last = 0
        while outstanding and (outstanding[0] in batch or outstanding[0] in gone):
            tag = outstanding.popleft()
            if tag in batch:
                last = tag
            else:
                gone.discard(tag)
        if last:
            await self.channel.basic_ack(last, multiple=True)
        for tag in sorted(t for t in batch if t > last):
            gone.add(tag)
            await self.channel.basic_ack(tag)
