"""SQLiteBroker: the durable embedded default. One file, many processes, no server.

- A message is a row of ``messages`` (see ``schema``): ready, delayed (its
  ``ready_at`` is later: delays are held in the file, never by a worker), or
  held by one consumer under a lease the worker renews.
- Claiming is one ``UPDATE ... RETURNING`` in a write transaction, so two
  processes can never claim one row. Every settle names (row, owner,
  token) and changes nothing once the lease was taken over: ``LeaseLost``.
- Retry and dead letter replace the row in one transaction: never lost,
  never doubled.
- All statements run on one thread per broker (``aioack._sqlite``), and the
  writes of one event-loop turn share one transaction and one commit.

See docs/sqlite.md for the settings, the guarantees and the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from aioack._sqlite import SQLiteIO, resolve_path
from aioack.brokers.base import (
    Broker,
    Consumer,
    DeadLetter,
    Delivery,
    LetterPass,
    QueueStats,
    WorkerRecord,
)
from aioack.brokers.sqlite import queries, schema
from aioack.brokers.sqlite.consumer import Handle, SQLiteConsumer
from aioack.brokers.sqlite.letters import SQLiteLetterPass
from aioack.brokers.sqlite.options import parse_url
from aioack.errors import ConfigurationError, LeaseLost, QueueFull, StaleDelivery

#: A fenced settle: (connection, held) -> whether this consumer still held the row.
Settle = Callable[[sqlite3.Connection, queries.Held], bool]


class SQLiteBroker(Broker):
    """``SQLiteBroker.from_url("sqlite:///path/to/file.db?visibility_timeout=30")``."""

    def __init__(self, url: str = "sqlite://", **options: Any) -> None:
        path, self.options = parse_url(url, options)
        self._path = path
        self.lease_check_interval_s = self.options.visibility_timeout / 3
        self._io: SQLiteIO | None = None
        self._consumers: set[SQLiteConsumer] = set()
        # A fresh event per change: every waiting consumer of this process wakes once.
        self._changed = asyncio.Event()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteBroker:
        """Build from ``sqlite://``, ``sqlite:///relative.db`` or ``sqlite:////abs.db``.

        Raises:
            ConfigurationError: an unknown option, a host in the URL, ``:memory:``.
        """
        return cls(url, **options)

    @property
    def location(self) -> str:
        """Where the messages are: the database file (absolute once connected)."""
        return f"sqlite:///{self._io.path if self._io is not None else self._path}"

    # -- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        """Open (and create, or migrate) the database file. Idempotent.

        Raises:
            ConfigurationError: its directory is missing or not writable, the file
                is not a database, or it has a newer schema.
            BrokerUnavailable: it stayed locked past ``busy_timeout``.
        """
        if self._io is not None and self._io.started:
            return
        opts = self.options
        self._io = SQLiteIO(
            resolve_path(self._path),
            busy_timeout_s=opts.busy_timeout,
            synchronous=opts.synchronous,
            setup=schema.ensure,
            name="sqlite-broker",
        )
        await self._io.start()

    async def aclose(self) -> None:
        for consumer in list(self._consumers):
            with contextlib.suppress(Exception):  # closing anyway: leases lapse on their own
                await consumer.close()
        io, self._io = self._io, None
        if io is not None:
            await io.aclose()

    def _running(self) -> SQLiteIO:
        if self._io is None:
            raise ConfigurationError("the SQLite broker is not connected; call connect() first")
        return self._io

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def declare(self, queues: Sequence[str]) -> None:
        # A row names its queue; declaring only records the name (inspect lists it).
        if queues:
            await self._running().run(
                functools.partial(queries.declare, queues=list(queues)), atomic=False
            )

    async def delete(self, queues: Sequence[str]) -> None:
        if queues:
            await self._running().run(functools.partial(queries.delete, queues=list(queues)))

    # -- producing ---------------------------------------------------------

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, delay_s: float = 0.0
    ) -> None:
        await self._insert(queue, [(queue, message_id, body, time.time() + max(delay_s, 0.0))])

    async def publish_many(self, queue: str, items: Sequence[tuple[str, bytes]]) -> None:
        now = time.time()
        await self._insert(queue, [(queue, message_id, body, now) for message_id, body in items])

    async def _insert(self, queue: str, rows: list[tuple[str, str, bytes, float]]) -> None:
        max_length = self.max_length(queue)
        if max_length is None:
            await self._running().run(functools.partial(queries.publish, rows=rows), atomic=False)
        elif not await self._running().run(
            functools.partial(
                queries.publish_bounded, queue=queue, rows=rows, max_length=max_length
            ),
            atomic=False,  # a read, then the same INSERT as an unbounded publish
        ):
            raise QueueFull(queue, max_length)
        self._notify()

    # -- consuming ---------------------------------------------------------

    async def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        if prefetch < 1:
            raise ConfigurationError(f"prefetch must be >= 1, got {prefetch}")
        if not queues:
            raise ConfigurationError("consume() needs at least one queue")
        consumer = SQLiteConsumer(
            self._running(),
            queues,
            prefetch,
            lease_s=self.options.visibility_timeout,
            poll_interval_s=self.options.poll_interval,
            changed=lambda: self._changed,
            on_close=self._consumers.discard,
            ceilings=self.unacked_ceilings(queues),
        )
        self._consumers.add(consumer)
        return consumer

    # -- settling ----------------------------------------------------------

    def _handle(self, delivery: Delivery) -> Handle:
        handle = delivery.handle
        if not isinstance(handle, Handle) or handle.consumer.io is not self._io:
            raise StaleDelivery(f"delivery on {delivery.queue!r} was not made by this broker")
        if handle.consumer.closed or not handle.consumer.holds(handle):
            raise StaleDelivery(
                f"row {handle.row_id} on {delivery.queue!r} is no longer held by consumer "
                f"{handle.consumer.name} (closed, or handed back)"
            )
        return handle

    async def _settle(
        self, delivery: Delivery, action: str, settle: Settle, *, atomic: bool
    ) -> None:
        """Run a fenced settle; LeaseLost when another consumer holds the row now."""
        handle = self._handle(delivery)
        held = handle.held
        try:
            owned = await self._running().run(lambda conn: settle(conn, held), atomic=atomic)
        finally:
            # Settled at most once: whatever the outcome, the consumer lets go.
            handle.consumer.forget(handle)
        if not owned:
            raise LeaseLost(
                f"cannot {action} row {handle.row_id} on {delivery.queue!r}: its lease ran out "
                "and another consumer holds it"
            )
        self._notify()

    async def ack(self, delivery: Delivery) -> None:
        await self._settle(
            delivery, "ack", lambda conn, held: queries.ack(conn, [held])[0], atomic=False
        )

    async def requeue(self, delivery: Delivery) -> None:
        await self._move_back(delivery, counted=True)

    async def release(self, delivery: Delivery) -> None:
        await self._move_back(delivery, counted=False)

    async def _move_back(self, delivery: Delivery, *, counted: bool) -> None:
        now = time.time()
        await self._settle(
            delivery,
            "requeue" if counted else "release",
            lambda conn, held: queries.move_back(conn, [held], now, counted=counted)[0],
            atomic=False,
        )

    async def retry(self, delivery: Delivery, body: bytes, *, delay_s: float) -> None:
        ready_at = time.time() + max(delay_s, 0.0)
        await self._settle(
            delivery,
            "retry",
            lambda conn, held: queries.retry(conn, held, body, ready_at),
            atomic=True,
        )

    async def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        await self._settle(
            delivery,
            "dead-letter",
            lambda conn, held: queries.dead_letter(conn, held, letter),
            atomic=True,
        )

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._running().run(
            functools.partial(queries.add_dead_letter, letter=letter), atomic=False
        )

    async def extend(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        lost: list[Delivery] = []
        mine: list[tuple[Delivery, Handle]] = []
        for delivery in deliveries:
            handle = delivery.handle
            if not isinstance(handle, Handle) or handle.consumer.closed:
                lost.append(delivery)
            elif handle.consumer.holds(handle):
                mine.append((delivery, handle))
        if not mine:
            return lost
        lease_until = time.time() + self.options.visibility_timeout
        renewed = await self._running().run(
            functools.partial(
                queries.extend, held=[h.held for _, h in mine], lease_until=lease_until
            ),
            atomic=False,
        )
        for (delivery, handle), ok in zip(mine, renewed, strict=True):
            if not ok:
                handle.consumer.forget(handle)
                lost.append(delivery)
        return lost

    # -- workers and queues ------------------------------------------------

    async def announce(self, record: WorkerRecord, ttl_s: float) -> None:
        await self._running().run(
            functools.partial(
                queries.announce,
                worker_id=record.worker_id,
                record=json.dumps(record.to_json()),
                expires_at=time.time() + ttl_s,
            )
        )

    async def retire(self, worker_id: str) -> None:
        await self._running().run(functools.partial(queries.retire, worker_id=worker_id))

    async def workers(self) -> list[WorkerRecord] | None:
        raws = await self._running().run(
            functools.partial(queries.workers, now=time.time()), write=False
        )
        records = (WorkerRecord.from_json(_json(raw)) for raw in raws)
        return [record for record in records if record is not None]

    async def queues(self) -> list[str] | None:
        names: list[str] = await self._running().run(queries.queues, write=False)
        return names

    # -- inspection --------------------------------------------------------

    async def stats(self, queue: str) -> QueueStats:
        ready, delayed, unacked, dead = await self._running().run(
            functools.partial(queries.stats, queue=queue, now=time.time()), write=False
        )
        return QueueStats(ready=ready, delayed=delayed, unacked=unacked, dead=dead)

    async def has_queue(self, queue: str) -> bool:
        return await self._running().run(
            functools.partial(queries.has_queue, queue=queue), write=False
        )

    async def _letter_pass(self, queue: str, batch_size: int) -> LetterPass:
        return await SQLiteLetterPass.begin(
            self._running(), queue, batch_size, self._notify, self.max_length(queue)
        )


def _json(raw: str) -> object:
    try:
        return json.loads(raw)
    except ValueError:  # written by something else: not a record
        return None
