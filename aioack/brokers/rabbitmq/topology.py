"""Queue names and arguments, delay buckets, and what aioack keeps in AMQP headers.

Pure functions: no I/O, so the wire layout is readable (and testable) in one place.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aioack.brokers.base import MAX_DELIVERY_COUNT, DeadLetter
from aioack.brokers.deadletters import letter_time, time_to_store
from aioack.brokers.rabbitmq.options import RabbitMQOptions

#: Prior counted deliveries of a republished copy (release, classic requeue).
H_DELIVERIES = "x-aioack-deliveries"
#: A classic-queue requeue copy: report it as redelivered.
H_REDELIVERED = "x-aioack-redelivered"
_DL = "x-aioack-dl-"
#: A dead letter's id: set by ``letter_headers`` (32 hex digits); anything else
#: in that header (anyone can publish to a dead-letter queue) is not trusted.
H_LETTER_ID = _DL + "id"
_LETTER_ID = re.compile(r"[0-9a-f]{32}")
#: A header frame must fit one frame (128 KiB by default): keep text well below.
_MAX_TEXT = 32 * 1024


def dead_queue(queue: str) -> str:
    return f"{queue}.dead"


def is_work_queue(name: str) -> bool:
    """Whether a queue RabbitMQ lists is a work queue (not aioack's dead letters,
    delay levels or shared queues)."""
    if name.startswith("aioack.") or name.endswith(".dead"):
        return False
    head, _, level = name.rpartition(".delay.L")
    return not (head and level.isdigit())


def work_queue_args(
    options: RabbitMQOptions, queue: str, max_length: int | None = None
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "x-queue-type": options.queue_type,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_queue(queue),
    }
    if max_length is not None and options.limit_by == "arguments":
        # Only quorum queues take a limit (use_limits): they refuse with
        # x-overflow=reject-publish below, a negative publisher confirm.
        args["x-max-length"] = max_length
    if options.queue_type == "quorum":
        # at-least-once: RabbitMQ keeps a message until the dead-letter queue confirmed it.
        args |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        if options.delivery_limit:
            args["x-delivery-limit"] = options.delivery_limit
    return args


def dead_queue_args(options: RabbitMQOptions) -> dict[str, Any]:
    return {"x-queue-type": options.queue_type}


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one delivery's headers say about it, every value checked."""

    delivery_count: int
    redelivered: bool
    #: Why the headers cannot be trusted, or None.
    malformed: str | None = None


def read_receipt(headers: Mapping[str, Any], *, redelivered: bool, broker_counts: bool) -> Receipt:
    """Delivery count (1 on the first delivery) and redelivered flag, from the headers.

    Every header is a publisher's to set, so each value is checked: a count
    must be an integer in 0..MAX_DELIVERY_COUNT (a huge one would overflow the
    dead letter's header, a negative one switch off ``delivery_limit``). A bad
    value makes the delivery ``malformed``; it is then counted as if the header
    were absent.

    - ``x-aioack-deliveries``: counted deliveries carried by a copy aioack
      republished (release, classic-queue requeue).
    - ``x-aioack-redelivered``: 1 on such a copy of an abandoned or requeued message.
    - ``x-delivery-count``: quorum queues' count of returns. Read only on a
      redelivery (``broker_counts``: quorum queues): on a first delivery
      RabbitMQ passes a publisher's value through unchanged; on a return it
      writes its own. Quorum queues count requeues and lost channels; RabbitMQ
      4 no longer counts a plain basic.nack, hence "at least one" below.
    """
    problems: list[str] = []
    carried = _count(headers, H_DELIVERIES, problems)
    returned = _count(headers, "x-delivery-count", problems) if broker_counts and redelivered else 0
    flag = headers.get(H_REDELIVERED)
    if flag is not None and flag not in (1, True):
        problems.append(f"header {H_REDELIVERED}={_shown(flag)} is not 1")
        flag = None
    returned = max(returned, 1 if redelivered else 0)
    return Receipt(
        delivery_count=min(carried + returned + 1, MAX_DELIVERY_COUNT + 1),
        redelivered=redelivered or flag is not None,
        malformed="; ".join(problems) or None,
    )


def _count(headers: Mapping[str, Any], name: str, problems: list[str]) -> int:
    value = headers.get(name)
    if value is None:
        return 0
    if type(value) is int and 0 <= value <= MAX_DELIVERY_COUNT:
        return value
    problems.append(f"header {name}={_shown(value)} is not a count in 0..{MAX_DELIVERY_COUNT}")
    return 0


def _shown(value: object) -> str:
    """A header value for a message: repr (no raw newline can forge a log line), clipped."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def copy_headers(
    headers: Mapping[str, Any], *, deliveries: int, redelivered: bool
) -> dict[str, Any]:
    """Headers for a republished copy: broker bookkeeping dropped, the count carried."""
    kept = {
        k: v
        for k, v in headers.items()
        if not k.startswith(("x-death", "x-first-death", "x-last-death", "x-aioack-"))
        and k != "x-delivery-count"
    }
    if deliveries:
        kept[H_DELIVERIES] = deliveries
    if redelivered:
        kept[H_REDELIVERED] = 1
    return kept


def letter_headers(letter: DeadLetter) -> dict[str, Any]:
    """The headers a dead letter is stored with, under a fresh letter id."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "reason": letter.reason,
        "detail": _clip(letter.detail),
        "error": _clip(letter.error),
        "traceback": _clip(letter.traceback),
        "delivery-count": letter.delivery_count,
        "attempt": letter.attempt,
        "message-id": letter.message_id,
        "dead-lettered-at": f"{time_to_store(letter.dead_lettered_at):.6f}",
    }
    return {_DL + k: v for k, v in fields.items() if v is not None}


def read_letter(
    queue: str,
    body: bytes,
    headers: Mapping[str, Any],
    message_id: str | None,
    delivery_limit: int,
) -> DeadLetter:
    """A DeadLetter from a dead-letter queue message, written by aioack or by RabbitMQ."""
    if _DL + "reason" not in headers:
        return _broker_letter(queue, body, headers, message_id, delivery_limit)
    attempt = headers.get(_DL + "attempt")
    stamp = headers.get(_DL + "dead-lettered-at")
    return DeadLetter(
        id=letter_id(headers, message_id, _str(stamp) or "", body),
        queue=queue,
        reason=_str(headers.get(_DL + "reason")) or "unknown",
        body=body,
        detail=_str(headers.get(_DL + "detail")) or "",
        error=_str(headers.get(_DL + "error")),
        traceback=_str(headers.get(_DL + "traceback")),
        delivery_count=_int(headers.get(_DL + "delivery-count"), 1),
        attempt=None if attempt is None else _int(attempt),
        message_id=_str(headers.get(_DL + "message-id")) or message_id,
        dead_lettered_at=letter_time(headers.get(_DL + "dead-lettered-at")),
    )


def _broker_letter(
    queue: str,
    body: bytes,
    headers: Mapping[str, Any],
    message_id: str | None,
    delivery_limit: int,
) -> DeadLetter:
    """RabbitMQ dead-lettered it itself (delivery limit, rejected): read ``x-death``.

    RabbitMQ drops ``x-delivery-count`` when it dead-letters, and the one in
    the dead-letter queue counts our own reads: the count is derived instead.
    """
    deaths = headers.get("x-death")
    death = deaths[0] if isinstance(deaths, list) and deaths else {}
    if not isinstance(death, Mapping):  # anyone can publish to a dead-letter queue
        death = {}
    reason = _str(death.get("reason")) or _str(headers.get("x-first-death-reason")) or "unknown"
    stamp: Any = death.get("time")
    return DeadLetter(
        id=letter_id(headers, message_id, f"{stamp!r} {death.get('count')!r}", body),
        queue=queue,
        reason=reason,
        body=body,
        detail=f"dead-lettered by RabbitMQ from {_str(death.get('queue')) or queue!r}: {reason}",
        delivery_count=_int(headers.get(H_DELIVERIES))
        + (delivery_limit + 1 if reason == "delivery_limit" else 1),
        message_id=message_id,
        dead_lettered_at=_death_time(stamp),
    )


def _death_time(stamp: object) -> float | None:
    """``x-death``'s time (an AMQP timestamp, decoded as a datetime); None when it is
    missing, of another type or out of range (anyone can publish to q.dead)."""
    if not isinstance(stamp, datetime):
        return None
    try:
        seconds = stamp.timestamp()
    except (OverflowError, OSError, ValueError):  # a naive time at the ends of the calendar
        return None
    return letter_time(seconds)


def letter_id(headers: Mapping[str, Any], message_id: str | None, stamp: str, body: bytes) -> str:
    """The letter's id: the one aioack stored it with; else one derived from what
    the letter carries (its message id, the time it was dead-lettered, its body).

    Letters RabbitMQ dead-lettered itself (``delivery_limit``), and letters of
    older versions, have no stored id: the derived one is the same on every
    read. Two such letters of one message, dead-lettered in the same second
    with the same body, share it; acting on that id acts on both.
    """
    stored = _str(headers.get(H_LETTER_ID))
    if stored is not None and _LETTER_ID.fullmatch(stored):
        return stored
    digest = hashlib.sha256()
    for part in (message_id or "", stamp):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    digest.update(body)
    return "h" + digest.hexdigest()[:31]


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= _MAX_TEXT:
        return text
    return text[: _MAX_TEXT // 2] + "\n... (clipped) ...\n" + text[-_MAX_TEXT // 2 :]


def _str(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _int(value: object, default: int = 0) -> int:
    """A count read back from a dead letter; anything else (a float, text, out of range)
    gives ``default``."""
    if type(value) is int and 0 <= value <= MAX_DELIVERY_COUNT:
        return value
    return default
