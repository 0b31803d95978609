"""The versioned JSON wire envelope. Decoding is validation.

A message never carries pickle: arguments are JSON made by pydantic from the
validated call, and turned back into typed values by the worker.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aioack.errors import MalformedMessage, MessageTooLarge

#: Default upper bound for one encoded message (1 MiB); a body over it is
#: refused at publish and dead-lettered on receipt.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


def new_task_id() -> str:
    return uuid.uuid4().hex


class Message(BaseModel):
    """One task invocation as it travels through a broker (format version 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    id: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=1, max_length=200)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: 1 for the first run; each Retry publishes a copy with attempt + 1.
    attempt: int = Field(default=1, ge=1)
    #: Unix time (seconds) after which the task is not run but dead-lettered.
    expires: float | None = None
    #: Unix time (seconds) the first attempt was published.
    published_at: float = Field(default_factory=time.time)
    idempotency_key: str | None = Field(default=None, max_length=200)

    def encode(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
        body = self.model_dump_json().encode()
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
        raise MalformedMessage(_summarize(exc)) from exc


def _summarize(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:3]]
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more
