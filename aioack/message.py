"""The versioned JSON wire envelope. Decoding is validation.

A message never carries pickle: arguments are JSON made by pydantic from the
validated call, and turned back into typed values by the worker.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

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
#: Fields left out of the body while they hold their default, which the decoder
#: puts back. A shorter body is cheaper everywhere, and fewer fields read make a
#: smaller model for each message a worker holds: a no-argument call decodes to
#: 4 fields, and pydantic's set of the fields present then takes 216 bytes, not
#: 728 (benchmarks/RESULTS.md). ``v`` is always sent; so is ``published_at``.
_OMITTED_AT_DEFAULT: tuple[tuple[str, object], ...] = (
    ("args", []),
    ("kwargs", {}),
    ("attempt", 1),
    ("expires", None),
    ("idempotency_key", None),
    ("headers", {}),
    ("then", None),
)

#: The most deliveries a count read from the wire may claim. A real crash loop
#: is stopped by ``delivery_limit`` long before; a higher count comes from a
#: forged or corrupt header (and would not fit a dead letter's AMQP long).
MAX_DELIVERY_COUNT = 1_000_000

#: The highest attempt number a message may carry (``max_retries`` above it is
#: refused at decoration); a higher one is forged, and would overflow headers.
MAX_ATTEMPT = 1_000_000


#: The most steps one chain may hold (each message carries the steps after it).
MAX_CHAIN_STEPS = 100

#: The most members one chord may have (its state in the result backend grows with it).
MAX_CHORD_SIZE = 10_000

#: A workflow id is short enough for the step ids made from it to be Names too.
WorkflowId = Annotated[str, Field(min_length=1, max_length=150), AfterValidator(_printable)]

#: A queue name, as ``options.check_queue_name`` takes it (checked here again: from the wire).
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")]


def step_id(workflow: str, index: int) -> str:
    """The task id of step ``index`` of a chain, or of member ``index`` of a group or chord.

    Deterministic, so a step published twice (a worker killed between its
    publish and its ack) is one task id twice, never two different runs.
    """
    return f"{workflow}-{index}"


def callback_id(workflow: str) -> str:
    """The task id of a chord's callback: the chord's result."""
    return f"{workflow}-callback"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Step(_Wire):
    """A signature on the wire: a task to publish later, with its checked JSON arguments."""

    task: Name
    queue: QueueName
    args: list[Any] = Field(default_factory=list, max_length=1000)
    kwargs: dict[Name, Any] = Field(default_factory=dict, max_length=1000)
    #: ``.si()``: the previous result is not prepended to ``args``.
    immutable: bool = False


class ChordLink(_Wire):
    """This message is member ``member`` of chord ``Continuation.workflow``."""

    member: int = Field(ge=0, lt=MAX_CHORD_SIZE)
    size: int = Field(ge=1, le=MAX_CHORD_SIZE)
    #: Published (once) when every member has succeeded, with their results in order.
    callback: Step

    @model_validator(mode="after")
    def _member_in_range(self) -> ChordLink:
        if self.member >= self.size:
            raise ValueError(f"chord member {self.member} of a chord of {self.size}")
        return self


class Continuation(_Wire):
    """What comes after this message in its workflow (format version 1).

    A chain step carries the steps after it (``rest``); a chord member
    carries its chord (``chord``). It travels inside the message, so the
    workflow lives as long as its current message: no producer is needed
    once the first message is published. Flat by construction (a Step holds
    no continuation), and bounded in length: a hostile one is refused on
    decode like any malformed body.
    """

    v: Literal[1] = 1
    workflow: WorkflowId
    #: This message's place: its step index in the chain (0 for a chord member).
    step: int = Field(default=0, ge=0, lt=MAX_CHAIN_STEPS)
    rest: list[Step] = Field(default_factory=list, max_length=MAX_CHAIN_STEPS)
    chord: ChordLink | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Continuation:
        if self.chord is not None and (self.rest or self.step):
            raise ValueError("a chord member carries no chain steps")
        if self.step + len(self.rest) >= MAX_CHAIN_STEPS:
            raise ValueError(f"a chain holds at most {MAX_CHAIN_STEPS} steps")
        return self

    @property
    def result_id(self) -> str:
        """The task id whose record is the whole workflow's result."""
        if self.chord is not None:
            return callback_id(self.workflow)
        return step_id(self.workflow, self.step + len(self.rest))


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
    #: The rest of a workflow (chain, chord) this message belongs to; sent
    #: only when set, so plain messages stay readable by earlier workers.
    then: Continuation | None = None

    def encode(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
        omitted = {name for name, default in _OMITTED_AT_DEFAULT if getattr(self, name) == default}
        body = self.model_dump_json(exclude=omitted).encode()
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
