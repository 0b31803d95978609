"""The versioned JSON wire envelope. Decoding is validation.

A message never carries pickle: arguments are JSON made by pydantic from the
validated call, and turned back into typed values by the worker.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from aioack.errors import MalformedMessage, MessageTooLarge

#: Default upper bound for one encoded message (1 MiB); a body over it is
#: refused at publish and dead-lettered on receipt.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


def new_task_id() -> str:
    return uuid.uuid4().hex


def _printable(value: str) -> str:
    # Ids and names reach log lines: a newline or another control character
    # there would let a publisher forge a whole log line.
    if not value.isprintable():
        raise ValueError("must hold printable characters only (no newline or control character)")
    return value


#: An id, task name or key: 1-200 printable characters.
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]

HeaderName = Annotated[str, Field(min_length=1, max_length=256)]
HeaderValue = Annotated[str, Field(max_length=8192)]
_NO_HEADERS = {"headers"}

#: The most deliveries a count read from the wire may claim. A real crash loop
#: is stopped by ``delivery_limit`` long before; a higher count comes from a
#: forged or corrupt header (and would not fit a dead letter's AMQP long).
MAX_DELIVERY_COUNT = 1_000_000

#: The highest attempt number a message may carry (``max_retries`` above it is
#: refused at decoration); a higher one is forged, and would overflow headers.
MAX_ATTEMPT = 1_000_000


class Message(BaseModel):
    """One task invocation as it travels through a broker (format version 1)."""

    # Infinity and NaN are not JSON, and no time is either.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    v: Literal[1] = 1
    id: Name
    task: Name
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: 1 for the first run; each Retry publishes a copy with attempt + 1.
    attempt: int = Field(default=1, ge=1, le=MAX_ATTEMPT)
    #: Unix time (seconds) after which the task is not run but dead-lettered.
    expires: float | None = None
    #: Unix time (seconds) the first attempt was published.
    published_at: float = Field(default_factory=time.time)
    idempotency_key: Name | None = None
    #: Text added by publish hooks (trace context); sent only when not empty,
    #: so a worker of an earlier version still takes messages without them.
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=64)

    def encode(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
        body = self.model_dump_json(exclude=None if self.headers else _NO_HEADERS).encode()
        if len(body) > max_bytes:
            raise MessageTooLarge(
                f"message for task {self.task!r} is {len(body)} bytes, over the "
                f"limit of {max_bytes}; pass large data by reference"
            )
        return body

    def next_attempt(self) -> Message:
        return self.model_copy(update={"attempt": self.attempt + 1})

    def is_expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


# The compiled validator, called directly: decode runs once per delivery.
_validate_json = Message.__pydantic_validator__.validate_json


def decode(body: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Validate ``body`` into a Message.

    Raises:
        MessageTooLarge: the body is over ``max_bytes``.
        MalformedMessage: not JSON, or not the envelope's shape.
    """
    if len(body) > max_bytes:
        raise MessageTooLarge(f"body is {len(body)} bytes, over the limit of {max_bytes}")
    try:
        return _validate_json(body)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise MalformedMessage(summarize(exc)) from exc


def summarize(exc: ValidationError) -> str:
    """The first errors of a validation, on one line, without the input values."""
    errors = exc.errors(include_url=False, include_input=False)
    # A location can be a key of the body (an unknown field): repr, never raw text.
    parts = [f"{_where(e['loc'])}: {e['msg']}" for e in errors[:3]]
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _where(loc: tuple[int | str, ...]) -> str:
    parts = (p if isinstance(p, str) and p.isidentifier() else repr(p) for p in loc)
    return ".".join(parts) or "body"
