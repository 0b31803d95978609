"""Coalescing the result backend's writes: one pipeline per round trip, for all runs.

A worker runs many tasks at once, and each stores a record or two. Sent one
by one, every store waits its own round trip and redis-py parses every reply
on the event loop. Here the writes of all runs that arrive while a pipeline
is in flight go out together in the next one: under load, one round trip
carries dozens of stores; when idle, a store goes out at once.

The pipeline is not a transaction: each command is atomic on its own (a SET,
or one script), and the commands of one run keep their order because a run
awaits each store before making the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

#: Queues one command on the pipeline it is given.
Command = Callable[[Pipeline], object]


class WriteBatcher:
    """``await batcher.run(command)``: the command's reply, sent with whatever else is waiting."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._waiting: list[tuple[Command, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, command: Command) -> Any:
        """Send ``command`` in the next pipeline; its reply, or its error raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((command, future))
        sender = self._sender
        # A sender left behind by a closed event loop never runs again.
        if sender is None or sender.done() or sender.get_loop() is not loop:
            self._sender = asyncio.create_task(self._send_all(), name="aioack-result-writes")
        return await future

    async def _send_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            await self._send(batch)

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for command, _ in batch:
            command(pipe)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed, or the sender was cancelled
            for _, future in batch:
                _settle(future, exc=exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                _settle(future, exc=reply)
            else:
                _settle(future, reply=reply)

    def close(self) -> None:
        """Stop sending: writes still waiting fail with ConnectionError."""
        if self._sender is not None:
            self._sender.cancel()
        for _, future in self._waiting:
            _settle(future, exc=ConnectionError("result backend closed"))
        self._waiting = []


def _settle(
    future: asyncio.Future[Any], *, reply: Any = None, exc: BaseException | None = None
) -> None:
    if future.done():  # its caller was cancelled: nobody waits for the reply
        return
    if exc is None:
        future.set_result(reply)
    elif isinstance(exc, asyncio.CancelledError):
        future.set_exception(ConnectionError("result write cancelled with its sender"))
    else:
        future.set_exception(exc)
