"""Dead letters as stream entries: the fields written, read back leniently, and a
pass over them by entry id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aioack.brokers.base import DeadLetter, LetterPass
from aioack.brokers.deadletters import letter_time, time_to_store
from aioack.brokers.redis.client import RedisIO
from aioack.brokers.redis.errors import translate_errors
from aioack.errors import PublishFailed, ReplayStopped


def letter_fields(letter: DeadLetter) -> list[str | bytes]:
    fields: dict[str, str | bytes | None] = {
        "reason": letter.reason,
        "detail": letter.detail,
        "error": letter.error,
        "traceback": letter.traceback,
        "delivery_count": str(letter.delivery_count),
        "attempt": None if letter.attempt is None else str(letter.attempt),
        "message_id": letter.message_id,
        "at": repr(time_to_store(letter.dead_lettered_at)),
        "body": letter.body,
    }
    flat: list[str | bytes] = []
    for name, value in fields.items():
        if value is not None:
            # surrogatepass: a traceback may carry undecodable file names.
            raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
            flat += [name, raw]
    return flat


def letter_from(queue: str, flat: Sequence[bytes], entry_id: bytes | None = None) -> DeadLetter:
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
        # Anyone can XADD to the dead stream: an unreadable time is unknown.
        dead_lettered_at=letter_time(fields.get(b"at")),
        id=None if entry_id is None else entry_id.decode(),
    )


class RedisLetterPass(LetterPass):
    """Visits the dead stream's entries up to the last one when the pass began.

    A replay is one script per batch: each copy is added to the queue's stream
    and its letter deleted atomically, so a crash never splits the two.
    """

    def __init__(
        self,
        io: RedisIO,
        queue: str,
        batch_size: int,
        until: bytes | None,
        max_length: int | None = None,
    ) -> None:
        self._io = io
        self._queue = queue
        #: The queue's limit: a replayed copy is new work, refused by a full queue.
        self._max_length = max_length
        self._keys = io.keys(queue)
        self._batch_size = batch_size
        self._after: bytes | None = None
        self._until = until

    @classmethod
    async def begin(
        cls, io: RedisIO, queue: str, batch_size: int, max_length: int | None
    ) -> RedisLetterPass:
        with translate_errors("read dead letters"):
            last: Any = await io.client.xrevrange(io.keys(queue).dead, "+", "-", count=1)
        return cls(io, queue, batch_size, last[0][0] if last else None, max_length)

    async def next_batch(self) -> list[DeadLetter]:
        if self._until is None:
            return []
        start = b"-" if self._after is None else b"(" + self._after
        with translate_errors("read dead letters"):
            entries: Any = await self._io.client.xrange(
                self._keys.dead, start, self._until, count=self._batch_size
            )
        if not entries:
            self._until = None
            return []
        self._after = entries[-1][0]
        return [letter_from(self._queue, flat, entry_id) for entry_id, flat in entries]

    async def replay(self, copies: Sequence[tuple[DeadLetter, str, bytes]]) -> int:
        args: list[str | bytes | int] = [self._io.group, self._max_length or 0]
        for letter, _, body in copies:  # the message id is in the body
            args += [_entry_id(letter), body]
        keys = [self._keys.stream, self._keys.dead, self._keys.delayed]
        with translate_errors("replay dead letters", other=PublishFailed):
            moved, full = await self._io.eval("replay_letters", keys, args)
        if int(full):
            raise ReplayStopped(self._queue, self._max_length, replayed=int(moved))
        return int(moved)

    async def remove(self, letters: Sequence[DeadLetter]) -> int:
        with translate_errors("purge dead letters"):
            removed = await self._io.client.xdel(
                self._keys.dead, *(_entry_id(letter) for letter in letters)
            )
        return int(removed)


def _entry_id(letter: DeadLetter) -> str:
    # Letters of this pass were read here: their id is always an entry id.
    assert letter.id is not None
    return letter.id
