"""A coroutine that says where it was made when it is dropped without being awaited.

``add.delay(2, 2)`` without ``await`` publishes nothing. Python's own warning
("coroutine ... was never awaited") names the place the coroutine was garbage
collected, and says nothing of the fix. This wrapper is a real Coroutine (so
``asyncio.create_task`` and ``gather`` take it) that remembers the caller's
file and line, and warns there.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class MustAwait(Coroutine[Any, Any, T]):
    """Wraps ``coro``; warns at the caller's line if it is never awaited nor started."""

    __slots__ = ("_coro", "_file", "_line", "_started", "_what")

    def __init__(self, coro: Coroutine[Any, Any, T], what: str, *, depth: int = 2) -> None:
        self._coro = coro
        self._what = what
        frame = sys._getframe(depth)  # the caller of delay()/apply_async()
        self._file = frame.f_code.co_filename
        self._line = frame.f_lineno
        self._started = False

    def __await__(self) -> Generator[Any, None, T]:
        self._started = True
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        self._started = True
        return self._coro.send(value)

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> Any:
        self._started = True
        return self._coro.throw(typ, val, tb)  # type: ignore[arg-type]

    def close(self) -> None:
        self._started = True
        self._coro.close()

    def __del__(self) -> None:
        if self._started:
            return
        self._coro.close()  # no second, placeless warning from Python itself
        # At interpreter shutdown, warnings may be gone already.
        with contextlib.suppress(Exception):
            warnings.warn_explicit(
                f"{self._what} was never awaited, so nothing was published: write "
                f"`await {self._what}` in async code, or call the *_sync twin "
                f"(e.g. delay_sync()) in sync code",
                RuntimeWarning,
                self._file,
                self._line,
            )
