"""LoopThread: one event loop on a daemon thread, for sync code to run coroutines on.

Why a thread of its own and not ``asyncio.run()`` per call: an App's
connections belong to the loop they were opened on, and ``asyncio.run()``
makes (and closes) a new loop each time. One long-lived loop keeps one set of
connections for every sync call, from any thread: each call hands its
coroutine to that loop and blocks its own thread until the result is back.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aioack.errors import BlockingCallInEventLoop

logger = logging.getLogger("aioack.sync")

T = TypeVar("T")

#: Loops still running at interpreter exit are stopped then (their threads are daemons).
_RUNNING: weakref.WeakSet[LoopThread] = weakref.WeakSet()
#: Every LoopThread, so that a forked child can forget its parent's.
_ALL: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def refuse_inside_event_loop(what: str) -> None:
    """Raise when the calling thread runs an event loop: a blocking call would freeze it.

    Raises:
        BlockingCallInEventLoop: says which async call to await instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise BlockingCallInEventLoop(
        f"{what} blocks its thread, and this thread runs an event loop: it would stop "
        f"every other task on it (or wait for ever on itself). In async code, await the "
        f"async call instead (e.g. `await task.delay(...)`, `await result.get()`)"
    )


class LoopThread:
    """An event loop started on first use on a daemon thread, stopped by ``close()``."""

    def __init__(self, name: str, *, on_close: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        # Runs on the loop before it stops: closes what was opened on it.
        self._on_close = on_close
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        _ALL.add(self)

    def forget(self) -> None:
        """In a forked child: the parent's thread does not exist here, and its
        connections are the parent's. Start afresh on the next call, closing nothing."""
        self._lock = threading.Lock()  # it may have been held by a parent's thread
        self._loop = self._thread = None
        _RUNNING.discard(self)

    @property
    def running(self) -> bool:
        return self._loop is not None

    def run(self, what: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine ``make()`` on the loop and return its result, here.

        An exception in it is raised here. Interrupted (KeyboardInterrupt), the
        coroutine is cancelled.

        Raises:
            BlockingCallInEventLoop: called where an event loop runs.
        """
        refuse_inside_event_loop(what)
        future = asyncio.run_coroutine_threadsafe(make(), self._started())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # a KeyboardInterrupt here: stop the work there too
            raise

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=_serve, args=(loop, ready), name=f"aioack-{self.name}", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
                _RUNNING.add(self)
            return self._loop

    def close(self, timeout_s: float = 5.0) -> None:
        """Close what was opened on the loop, stop it and join its thread. Idempotent.

        Raises:
            BlockingCallInEventLoop: called where an event loop runs.
        """
        refuse_inside_event_loop(f"{self.name}: close_sync()")
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
            _RUNNING.discard(self)
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._on_close(), loop).result(timeout_s)
        except Exception as exc:  # closing anyway: say what was left open
            logger.warning("%s: closing its connections failed: %r", self.name, exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        if thread.is_alive():
            logger.warning("%s: its event loop thread did not stop in %.0fs", self.name, timeout_s)


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _forget_all_in_child() -> None:
    for portal in list(_ALL):
        portal.forget()


# A process that forks after a *_sync call: its child would wait for ever on a
# loop whose thread stayed in the parent.
os.register_at_fork(after_in_child=_forget_all_in_child)


@atexit.register
def _close_all_at_exit() -> None:
    # atexit runs before daemon threads are stopped: connections close cleanly
    # (a Redis pipeline of acks sent, a SQLite file checkpointed).
    for portal in list(_RUNNING):
        portal.close(timeout_s=2.0)
