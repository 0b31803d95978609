"""RabbitMQ broker options: parsed from the URL query and keyword arguments, typos refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from aioack.urls import parse_options

#: RabbitMQ's own default ``consumer_timeout`` (30 minutes).
DEFAULT_CONSUMER_TIMEOUT_S = 1800.0


class RabbitMQOptions(BaseModel):
    """Every knob of the RabbitMQ broker, in seconds where it is a duration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``quorum`` (replicated, counts deliveries, at-least-once dead-lettering)
    #: or ``classic`` (single node, cannot count redeliveries beyond "redelivered").
    queue_type: Literal["quorum", "classic"] = "quorum"
    #: Broker-side backstop (quorum only): a message returned this many times
    #: is dead-lettered by RabbitMQ itself. 0 turns it off.
    delivery_limit: int = Field(default=20, ge=0)
    #: The server's ``consumer_timeout`` as configured in rabbitmq.conf; AMQP
    #: cannot read it, so say it here when you changed it. Used by preflight.
    consumer_timeout_s: float = Field(default=DEFAULT_CONSUMER_TIMEOUT_S, gt=0)
    #: How long publish waits for the confirm (and for a reconnect) before failing.
    publish_timeout_s: float = Field(default=10.0, gt=0)
    #: Connect timeout of one attempt.
    connect_timeout_s: float = Field(default=5.0, gt=0)
    #: Pause between reconnect attempts of the robust connection.
    reconnect_interval_s: float = Field(default=1.0, gt=0)
    #: AMQP heartbeat; a dead peer is noticed after about two of these.
    heartbeat_s: int = Field(default=30, ge=0)
    #: How often the worker asks which held deliveries lost their channel.
    lease_check_interval_s: float = Field(default=0.5, gt=0)
    #: The management HTTP API (``http://user:pass@host:15672``), for what AMQP
    #: cannot tell: every consumer's unacked count, the queues, the live workers.
    management_url: str | None = None
    #: Where a queue's ``max_length`` (``App(queue_limits=...)``) lives on the
    #: server: ``arguments`` declares it (``x-max-length``; a queue declared
    #: before without it is refused: PRECONDITION_FAILED); ``policy``: aioack
    #: declares nothing and an operator's policy sets it (changeable at any
    #: time). Either way a negative confirm from the queue is ``QueueFull``.
    limit_by: Literal["arguments", "policy"] = "arguments"


def parse_url(url: str, options: Mapping[str, Any]) -> tuple[str, RabbitMQOptions]:
    """Split ``url`` into the bare AMQP URL and validated options (kwargs win).

    Raises:
        ConfigurationError: an unknown option or a bad value; says what to change.
    """
    bare, parsed = parse_options(url, options, RabbitMQOptions, what="RabbitMQ")
    return urlunsplit(urlsplit(bare)._replace(query="")), parsed
