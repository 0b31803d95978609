"""The one place aio-pika / aiormq exceptions become aioack's.

Every broker method runs its client calls inside one of these context
managers, so nothing from the client library escapes the broker module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pamqp.exceptions
from aiormq import exceptions as amqp

from aioack.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    PublishFailed,
    QueueFull,
    StaleDelivery,
)

#: What a dropped or refused connection looks like from the client's side.
_UNAVAILABLE = (
    amqp.AMQPConnectionError,
    amqp.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)
_CLIENT = (amqp.AMQPError, pamqp.exceptions.PAMQPException, RuntimeError)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Map client errors of ``what`` (an operation, for the message) to BrokerError."""
    try:
        yield
    except amqp.ChannelPreconditionFailed as exc:
        raise ConfigurationError(
            f"{what}: RabbitMQ refused it ({_reason(exc)}); a queue probably exists with "
            "other arguments (queue_type, delivery_limit, a queue limit's max_length): delete "
            "it or use the old settings (a max_length can be set by a policy instead: "
            "limit_by=policy, see docs/rabbitmq.md)"
        ) from exc
    except _UNAVAILABLE as exc:
        raise BrokerUnavailable(f"{what}: RabbitMQ unavailable ({_reason(exc)})") from exc
    except _CLIENT as exc:
        raise BrokerError(f"{what}: {_reason(exc)}") from exc


@contextmanager
def translated_publish(
    queue: str, *, limited: bool = False, max_length: int | None = None
) -> Iterator[None]:
    """Like ``translated``, but a returned or nacked message is PublishFailed.

    ``limited``: the message went to a work queue that has a length limit;
    a negative confirm (not a return) then means the queue is full
    (x-overflow=reject-publish): QueueFull.
    """
    try:
        with translated(f"publish to {queue!r}"):
            try:
                yield
            except amqp.DeliveryError as exc:
                # PublishError: returned (no queue took it); else a negative confirm.
                if limited and not isinstance(exc, amqp.PublishError):
                    raise QueueFull(
                        queue, max_length, detail="RabbitMQ refused it (negative confirm)"
                    ) from exc
                raise PublishFailed(
                    f"RabbitMQ did not take the message for {queue!r} ({_reason(exc)}); "
                    "is the queue declared?"
                ) from exc
    except ConfigurationError as exc:
        raise PublishFailed(str(exc)) from exc.__cause__


@contextmanager
def translated_settle(what: str) -> Iterator[None]:
    """A settle whose channel went away is stale: the broker redelivers the message."""
    try:
        yield
    except (amqp.ChannelInvalidStateError, amqp.AMQPError, ConnectionError) as exc:
        raise StaleDelivery(f"{what}: its channel is gone ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
