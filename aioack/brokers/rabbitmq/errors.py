"""The one place aio-pika / aiormq exceptions become aioack's.

Every broker method runs its client calls inside one of these context
managers, so nothing from the client library escapes the broker module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import pamqp.exceptions
from aiormq import exceptions as amqp

from aioack._connect import endpoint, unreachable
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

#: The client loggers that report a failed first connect on their own (aiormq's
#: "error when creating transport", aio-pika's "Reconnecting after 1 seconds"),
#: before aioack's one line says the same with what to check.
_CLIENT_LOGGERS = ("aiormq.connection", "aio_pika.connection", "aio_pika.robust_connection")

logger = logging.getLogger("aioack.brokers.rabbitmq")


@contextmanager
def translated_connect(url: str) -> Iterator[None]:
    """A first connect: a refused login or vhost is a setting to change
    (ConfigurationError), no server is BrokerUnavailable saying what to check.
    The client's own log lines about it are demoted to aioack's DEBUG meanwhile."""
    where = endpoint(url)
    with _client_logs_demoted():
        try:
            yield
        except amqp.ProbableAuthenticationError as exc:
            raise ConfigurationError(
                f"RabbitMQ at {where} refused the login of user {_user(url)!r} "
                "(ACCESS_REFUSED): check the user/password in the URL "
                "(amqp://user:password@host:5672/vhost)"
            ) from exc
        except amqp.InvalidFrameError as exc:
            if "Connection.OpenOk" not in str(exc):
                raise BrokerError(f"connect to RabbitMQ at {where}: {_reason(exc)}") from exc
            # The server closed instead of opening the virtual host.
            raise ConfigurationError(
                f"RabbitMQ at {where} would not open virtual host {_vhost(url)!r}: it does "
                f"not exist, or user {_user(url)!r} has no permission on it. Check the path "
                "of the URL (amqp://user:password@host:5672/ is the default vhost '/'), or "
                "create it: rabbitmqctl add_vhost NAME; rabbitmqctl set_permissions -p NAME "
                "USER '.*' '.*' '.*'"
            ) from exc
        except _UNAVAILABLE as exc:
            raise unreachable("RabbitMQ", url, _reason(exc)) from exc
        except _CLIENT as exc:
            raise BrokerError(f"connect to RabbitMQ at {where}: {_reason(exc)}") from exc


class _ToDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        logger.debug("%s: %s", record.name, record.getMessage())
        return False


@contextmanager
def _client_logs_demoted() -> Iterator[None]:
    # Process-wide while it lasts: another connection's client lines in the
    # meantime go to DEBUG too (a connect takes at most connect_timeout).
    demote = _ToDebug()
    loggers = [logging.getLogger(name) for name in _CLIENT_LOGGERS]
    for client_logger in loggers:
        client_logger.addFilter(demote)
    try:
        yield
    finally:
        for client_logger in loggers:
            client_logger.removeFilter(demote)


def _user(url: str) -> str:
    return unquote(urlsplit(url).username or "guest")


def _vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


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
