"""Dead letters as stream entries: the fields written, and read back leniently."""

from __future__ import annotations

from collections.abc import Sequence

from aioack.brokers.base import DeadLetter


def letter_fields(letter: DeadLetter) -> list[str | bytes]:
    fields: dict[str, str | bytes | None] = {
        "reason": letter.reason,
        "detail": letter.detail,
        "error": letter.error,
        "traceback": letter.traceback,
        "delivery_count": str(letter.delivery_count),
        "attempt": None if letter.attempt is None else str(letter.attempt),
        "message_id": letter.message_id,
        "at": repr(letter.dead_lettered_at),
        "body": letter.body,
    }
    flat: list[str | bytes] = []
    for name, value in fields.items():
        if value is not None:
            # surrogatepass: a traceback may carry undecodable file names.
            raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
            flat += [name, raw]
    return flat


def letter_from(queue: str, flat: Sequence[bytes]) -> DeadLetter:
    fields = dict(zip(flat[0::2], flat[1::2], strict=True))

    def text(name: bytes) -> str | None:
        raw = fields.get(name)
        return None if raw is None else raw.decode("utf-8", "surrogatepass")

    def number(name: bytes) -> int | None:
        raw = fields.get(name)
        return int(raw) if raw is not None and raw.isdigit() else None

    return DeadLetter(
        queue=queue,
        reason=text(b"reason") or "",
        body=fields.get(b"body", b""),
        detail=text(b"detail") or "",
        error=text(b"error"),
        traceback=text(b"traceback"),
        delivery_count=number(b"delivery_count") or 1,
        attempt=number(b"attempt"),
        message_id=text(b"message_id"),
        dead_lettered_at=seconds(fields.get(b"at")),
    )


def seconds(raw: bytes | None) -> float:
    try:
        return float(raw or 0)
    except ValueError:  # written by hand, not by us
        return 0.0
