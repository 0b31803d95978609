"""A pass over a queue's dead letters, by row id: replay and purge are transactions."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

from aioack._sqlite import SQLiteIO
from aioack.brokers.base import DeadLetter, LetterPass
from aioack.brokers.sqlite import queries
from aioack.errors import ReplayStopped


class SQLiteLetterPass(LetterPass):
    """Visits the letters with a row id up to the newest one when the pass began.

    A replay deletes each letter and inserts its copy in one transaction:
    a crash leaves either both as they were or both done, never neither.
    """

    def __init__(
        self,
        io: SQLiteIO,
        queue: str,
        batch_size: int,
        until: int,
        notify: Callable[[], None],
        max_length: int | None = None,
    ) -> None:
        self._io = io
        self._queue = queue
        #: The queue's limit: a replayed copy is new work, refused by a full queue.
        self._max_length = max_length
        self._batch_size = batch_size
        self._after = 0
        self._until = until
        self._notify = notify

    @classmethod
    async def begin(
        cls,
        io: SQLiteIO,
        queue: str,
        batch_size: int,
        notify: Callable[[], None],
        max_length: int | None,
    ) -> SQLiteLetterPass:
        until = await io.run(functools.partial(queries.last_letter, queue=queue), write=False)
        return cls(io, queue, batch_size, until, notify, max_length)

    async def next_batch(self) -> list[DeadLetter]:
        batch = await self._io.run(
            functools.partial(
                queries.letters,
                queue=self._queue,
                after=self._after,
                until=self._until,
                limit=self._batch_size,
            ),
            write=False,
        )
        if batch:
            self._after = _row_id(batch[-1])
        return batch

    async def replay(self, copies: Sequence[tuple[DeadLetter, str, bytes]]) -> int:
        rows = [(_row_id(letter), message_id, body) for letter, message_id, body in copies]
        moved, full = await self._io.run(
            functools.partial(
                queries.replay_letters,
                queue=self._queue,
                copies=rows,
                now=time.time(),
                max_length=self._max_length,
            )
        )
        if moved:
            self._notify()  # wake this process's consumers: there is work
        if full:
            raise ReplayStopped(self._queue, self._max_length, replayed=moved)
        return moved

    async def remove(self, letters: Sequence[DeadLetter]) -> int:
        row_ids = [_row_id(letter) for letter in letters]
        return await self._io.run(
            functools.partial(queries.remove_letters, queue=self._queue, row_ids=row_ids),
            atomic=False,
        )


def _row_id(letter: DeadLetter) -> int:
    # Letters of this pass were read here: their id is always a row id.
    assert letter.id is not None
    return int(letter.id)
