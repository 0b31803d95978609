"""Batch enqueue: many runs validated first, then one broker batch per queue.

``Task.map()`` and ``App.publish_many()`` build their messages with these
helpers; the App encodes them and hands each queue's share to
``Broker.publish_many`` (one pipelined round trip on Redis, one transaction
on SQLite, the confirms awaited together on RabbitMQ). Nothing is published until every item of the
call has validated and encoded, so one bad item publishes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from aioack.brokers import Broker
from aioack.errors import InvalidArguments
from aioack.limits import publish_bounded
from aioack.message import Message, new_task_id, summarize
from aioack.signature import TaskSignature

T = TypeVar("T")

#: Runs one call may enqueue: a batch is held in memory (and, on Redis with a
#: queue limit, sent as one script), so it is bounded; split larger ones.
MAX_BATCH = 10_000

#: (message id, encoded body) pairs, by queue, as ``Broker.publish_many`` takes them.
EncodedBatch = Mapping[str, Sequence[tuple[str, bytes]]]


def bounded(items: Iterable[T], what: str) -> list[T]:
    """The items as a list; more than MAX_BATCH fails before any is looked at."""
    if isinstance(items, str | bytes | Mapping):
        raise TypeError(f"{what} takes an iterable of items, not a {type(items).__name__}")
    taken = list(itertools.islice(items, MAX_BATCH + 1))
    if len(taken) > MAX_BATCH:
        raise ValueError(f"{what}: at most {MAX_BATCH:,} runs per call; split the batch")
    return taken


def call_message(
    name: str,
    signature: TaskSignature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    now: float,
    where: str,
) -> Message:
    """The message of one run, its arguments checked as ``delay()`` checks them.

    Raises:
        InvalidArguments: the arguments do not fit the task (``where`` named).
        ValueError: more arguments than a message may carry.
    """
    try:
        wire_args, wire_kwargs = signature.to_wire(args, kwargs)
    except InvalidArguments as exc:
        raise InvalidArguments(f"{where}: {exc}") from exc
    try:
        return Message(
            id=new_task_id(), task=name, args=wire_args, kwargs=wire_kwargs, published_at=now
        )
    except ValidationError as exc:
        raise ValueError(f"{where}: {summarize(exc)}") from exc


async def publish_encoded(broker: Broker, batch: EncodedBatch) -> None:
    """Each queue's share in one ``publish_many``, the queues concurrently.

    A full queue is handled as its ``QueueLimit.when_full`` says. Where the
    broker adds a batch all or none (memory, Redis, SQLite) a waiting
    publish retries the whole batch. RabbitMQ decides per message and checks
    a queue's length after taking a message, so a pipelined batch could
    overshoot ``max_length`` by the whole batch: into a queue with a
    ``max_length`` its messages go one confirm at a time, each waiting on
    its own, so the limit holds and a retry never sends one twice.

    Raises:
        The first error of any queue (QueueFull, BrokerUnavailable,
        PublishFailed), after every queue's publish has ended.
    """
    outcomes = await asyncio.gather(
        *(_publish_queue(broker, queue, items) for queue, items in batch.items()),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def _publish_queue(broker: Broker, queue: str, items: Sequence[tuple[str, bytes]]) -> None:
    limit = broker.limits.get(queue)
    if broker.batches_all_or_none or broker.max_length(queue) is None:
        await publish_bounded(lambda: broker.publish_many(queue, items), queue, limit)
        return
    for message_id, body in items:  # stops at the first refusal (after its wait)
        await publish_bounded(
            functools.partial(broker.publish, queue, body, message_id=message_id), queue, limit
        )
