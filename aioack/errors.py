"""The failure model of aioack, drawn in one place.

Exception tree (everything aioack raises on purpose derives from AioackError):

    AioackError
    ├── ConfigurationError      bad settings, caught at start-up / call site
    ├── InvalidArguments        delay()/apply_async() arguments do not fit the task
    ├── MessageTooLarge         an encoded message is over max_message_bytes
    ├── UnknownTask             no task registered under a name
    ├── MalformedMessage        a body that is not a valid aioack envelope
    ├── BrokerError             anything a broker client raised, translated
    │   ├── BrokerUnavailable   the broker cannot be reached (connect, I/O)
    │   └── PublishFailed       the broker did not take a message (no confirm, returned)
    │       └── QueueFull       the queue is at its max_length (after waiting, if configured)
    │           └── ReplayStopped  a dead-letter replay stopped at a full queue, part done
    ├── DeliveryError           a settle that must not (or could not) happen
    │   ├── AlreadySettled      a second settle of one delivery (refused in-process)
    │   └── StaleDelivery       this worker no longer owns the delivery
    │       └── LeaseLost       Redis: the lease ran out and another consumer took it
    ├── TimeLimitExceeded       a task ran past its time_limit (raised into the outcome)
    ├── TaskFailed              result.get(): the task failed for good or was dead-lettered
    │   └── TaskRevoked         result.get(): the task was revoked (app.revoke())
    ├── ResultTimeout           result.get(): no final state within the timeout
    ├── JoinInsideTask          result.get() inside a running task without allow_join=True
    └── BlockingCallInEventLoop a *_sync call (delay_sync, get_sync...) where an event loop runs

Control flow lives *outside* the error root, the way anyio keeps ``WouldBlock``
apart: ``except AioackError`` in user code never swallows a ``Retry`` or a
``Reject`` raised by a task.
"""

from __future__ import annotations


class AioackError(Exception):
    """Base class of every error aioack raises on purpose."""


class ConfigurationError(AioackError):
    """Raised when settings cannot work; the message says what to change."""


class InvalidArguments(AioackError, TypeError):
    """Raised at the call site when arguments do not fit the task's signature."""


class MessageTooLarge(AioackError, ValueError):
    """Raised when an encoded message is larger than ``max_message_bytes``."""


class UnknownTask(AioackError, LookupError):
    """Raised when no task is registered under the given name."""


class MalformedMessage(AioackError, ValueError):
    """Raised when a body is not a valid aioack envelope (undecodable, wrong shape)."""


class BrokerError(AioackError):
    """Raised when the broker client failed; the original is the ``__cause__``."""


class BrokerUnavailable(BrokerError, ConnectionError):
    """Raised when the broker cannot be reached or the connection dropped."""


class PublishFailed(BrokerError):
    """Raised when the broker did not confirm that a message sits in a queue."""


class QueueFull(PublishFailed):
    """Raised when a publish finds its queue at ``max_length`` (``aioack.limits``).

    With ``when_full="wait"`` it is raised once ``wait_timeout`` passed with
    no room. The message was not enqueued, and nothing already queued was
    touched. A PublishFailed, because that is what it is to a caller (the
    message is not on the queue: try later or give up); a subclass, because
    it is not a broker fault and retrying at once does not help.
    """

    def __init__(
        self,
        queue: str,
        max_length: int | None,
        *,
        waited_s: float = 0.0,
        detail: str = "",
    ) -> None:
        self.queue = queue
        self.max_length = max_length
        #: Seconds the publish waited for room (0 with ``when_full="reject"``).
        self.waited_s = waited_s
        bound = f"max_length={max_length}" if max_length is not None else "its length limit"
        text = f"queue {queue!r} is full ({bound}): message not enqueued"
        super().__init__(f"{text}; {detail}" if detail else text)


class ReplayStopped(QueueFull):
    """Raised when a dead-letter replay stopped because its queue is full.

    A replay puts copies back one by one, each only if the queue has room,
    like a publish. At the first copy refused it stops: the ``replayed``
    letters before it are back in the queue (and no longer dead letters);
    every other letter it would have taken is still a dead letter, with no
    copy in the queue. Nothing lost, nothing duplicated: replay again once
    workers have made room.
    """

    def __init__(self, queue: str, max_length: int | None, *, replayed: int) -> None:
        #: Letters moved back before the queue filled up.
        self.replayed = replayed
        super().__init__(
            queue,
            max_length,
            detail=f"replay stopped after {replayed} letter{'' if replayed == 1 else 's'}; "
            "the rest are still dead letters",
        )


class DeliveryError(AioackError):
    """Raised when a delivery cannot be settled as asked."""


class AlreadySettled(DeliveryError):
    """Raised when a delivery that was already settled is settled again.

    The AckManager refuses the second settle in-process; it never reaches a broker.
    """


class StaleDelivery(DeliveryError):
    """Raised when this worker no longer owns a delivery (closed channel, closed consumer).

    The broker redelivers such a message; settling it here would be wrong.
    """


class LeaseLost(StaleDelivery):
    """Raised when a lease-based broker (Redis) finds another consumer holds the entry."""


class TimeLimitExceeded(AioackError, TimeoutError):
    """Raised into a task's outcome when it ran longer than its ``time_limit``.

    List it in ``autoretry_for`` to retry timeouts.
    """


class TaskFailed(AioackError):
    """Raised by ``result.get()`` when the task ended in FAILURE or DEAD_LETTERED.

    Carries what the worker recorded: the remote exception's type name,
    message and formatted traceback (None when it never ran, e.g. expired).
    """

    def __init__(
        self,
        task_id: str,
        state: str,
        exc_type: str | None,
        exc_message: str | None,
        traceback: str | None,
    ) -> None:
        self.task_id = task_id
        self.state = state
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.traceback = traceback
        what = f"{exc_type}: {exc_message}" if exc_type else (exc_message or "no detail")
        super().__init__(f"task {task_id} {state.lower()}: {what}")


class TaskRevoked(TaskFailed):
    """Raised by ``result.get()`` when the task was revoked (not run, or cancelled)."""


class ResultTimeout(AioackError, TimeoutError):
    """Raised by ``result.get(timeout=...)`` when no final state arrived in time."""


class JoinInsideTask(AioackError, RuntimeError):
    """Raised when a running task awaits a result without ``allow_join=True``.

    A worker whose slots all wait on each other's results never makes progress.
    """


class BlockingCallInEventLoop(AioackError, RuntimeError):
    """Raised when a blocking ``*_sync`` call (``delay_sync()``, ``get_sync()``...)
    is made in a thread that runs an event loop: it would block that loop.
    Await the async call instead."""


class Retry(Exception):
    """Raise inside a task to run it again later.

    ``countdown`` (seconds) overrides the task's backoff policy for this retry.
    Not an AioackError: ``except AioackError`` must never swallow it.
    """

    def __init__(self, countdown: float | None = None, *, reason: str = "") -> None:
        if countdown is not None and countdown < 0:
            raise ValueError("Retry countdown must be >= 0 seconds")
        self.countdown = countdown
        self.reason = reason
        super().__init__(reason or "retry requested")


class Reject(Exception):
    """Raise inside a task to refuse its message.

    ``requeue=True`` puts it back on the queue (counted against
    ``delivery_limit``); ``requeue=False`` dead-letters it with ``reason``.
    """

    def __init__(self, reason: str = "rejected", *, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason)
