"""AckManager: every delivery from receipt to settlement, settled exactly once.

It carries out the Actions that ``decide()``/``admit()`` choose, refuses a
second settle in-process, renews leases of held deliveries on a heartbeat,
and notices deliveries this worker no longer owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from aioack._backoff import jittered
from aioack._cancel import raise_swallowed_cancel
from aioack.brokers.base import BrokerCore, DeadLetter, Delivery
from aioack.decide import Action, ActionKind, dead_letter
from aioack.errors import (
    AlreadySettled,
    BrokerError,
    BrokerUnavailable,
    LeaseLost,
    QueueFull,
    StaleDelivery,
)
from aioack.hooks import DeliveryEvent, Hooks, LeaseEvent, SettledEvent
from aioack.message import Message

logger = logging.getLogger("aioack.worker")

#: Backoff (seconds, before jitter) between attempts to settle while the broker
#: is unreachable.
SETTLE_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)

#: The ``event`` field of a settle's log line, by action.
_EVENTS = {
    ActionKind.ACK: "acked",
    ActionKind.RETRY: "retry_scheduled",
    ActionKind.DEFER: "deferred",
    ActionKind.REQUEUE: "requeued",
    ActionKind.RELEASE: "released",
    ActionKind.DEAD_LETTER: "dead_lettered",
    ActionKind.NOTHING: "settled_before",
}

#: A settle whose return value is not to be logged (no redactor, or not a success).
NO_RESULT = object()


@dataclass(eq=False, slots=True)
class Held:
    """One delivery this worker holds, and what is known of it."""

    delivery: Delivery
    message: Message | None = None
    #: The broker was told (ack/requeue/...) or the delivery was lost: never again.
    settled: bool = False
    #: This worker no longer owns the delivery (lease lost, channel gone).
    lost: bool = False
    started_at: float | None = None
    #: The run's asyncio task, set only while the task's function executes:
    #: cancelling it then lands inside the function, never inside a settle.
    body: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        if self.message is None:
            return f"<undecodable>[{self.delivery.queue}]"
        return f"{self.message.task}[{self.message.id}]"

    @property
    def attempt(self) -> int | None:
        return self.message.attempt if self.message else None

    def fields(self, event: str, worker_id: str, **more: object) -> dict[str, object]:
        """The structured fields of a log line about this delivery (``extra=``)."""
        message, delivery = self.message, self.delivery
        return {
            "event": event,
            "task": message.task if message else None,
            "task_id": message.id if message else None,
            "queue": delivery.queue,
            "attempt": message.attempt if message else None,
            "delivery_count": delivery.delivery_count,
            "worker_id": worker_id,
            **more,
        }


class AckManager:
    """Owns held deliveries and settles each once, through the broker."""

    def __init__(
        self,
        broker: BrokerCore,
        *,
        on_lost: Callable[[Held], None],
        hooks: Hooks | None = None,
        worker_id: str = "",
    ) -> None:
        self._broker = broker
        self._worker_id = worker_id
        self._on_lost = on_lost
        self._hooks = hooks if hooks is not None else Hooks()
        self._held: dict[int, Held] = {}
        self._wake = asyncio.Event()
        #: Monotonic time the last delayed copy this worker published comes due.
        self.delayed_until = 0.0

    def receive(self, delivery: Delivery) -> Held:
        held = Held(delivery)
        self._held[id(held)] = held
        return held

    @property
    def held_count(self) -> int:
        return len(self._held)

    def holding(self, message_id: str) -> list[Held]:
        """The deliveries of this message id held now (a scan: for rare events only)."""
        return [
            h for h in self._held.values() if h.message is not None and h.message.id == message_id
        ]

    async def ack_early(self, held: Held) -> None:
        """Ack before the run finishes (``acks_late=False`` or ``ctx.ack()``).

        Raises:
            AlreadySettled: it was settled before.
        """
        self._claim(held)
        await self._call(held, ActionKind.ACK, lambda: self._broker.ack(held.delivery))
        logger.info(
            "task %s attempt %s acked early",
            held.label,
            held.attempt,
            extra=held.fields("acked_early", self._worker_id),
        )

    async def settle(
        self,
        held: Held,
        action: Action,
        *,
        retry_body: bytes | None = None,
        error: BaseException | None = None,
        traceback_text: str | None = None,
        logged_result: object = NO_RESULT,
    ) -> None:
        """Carry out ``action`` for ``held``; the delivery is forgotten afterwards.

        ``logged_result``: the return value as a redactor let it be logged.

        A delivery already settled (early ack) gets copy-based actions only:
        a retry publishes, a dead letter is added; the delivery is not touched.

        Raises:
            AlreadySettled: a delivery-touching action on a settled delivery.
        """
        try:
            if action.kind is ActionKind.NOTHING:
                pass
            elif held.settled and not held.lost:
                await self._settle_copy(held, action, retry_body, error, traceback_text)
            elif not held.lost:
                self._claim(held)
                operation = self._operation(held, action, retry_body, error, traceback_text)
                try:
                    await self._call(held, action.kind, operation)
                except Exception as exc:  # a bug, or a value the client cannot send
                    await self._fall_back(held, action, exc)
            if action.kind in (ActionKind.RETRY, ActionKind.DEFER) and not held.lost:
                due = time.monotonic() + action.delay_s
                self.delayed_until = max(self.delayed_until, due)
            self._log_settled(held, action, error, logged_result)
            if self._hooks.observes_settles:
                self._emit_settled(held, action)
        finally:
            self._held.pop(id(held), None)

    def _emit_settled(self, held: Held, action: Action) -> None:
        hooks = self._hooks
        kind = action.kind
        wanted = (
            hooks.on_settled
            or (hooks.on_retry and kind in (ActionKind.RETRY, ActionKind.DEFER))
            or (hooks.on_dead_letter and kind is ActionKind.DEAD_LETTER)
        )
        if not wanted:
            return  # the hot path builds no event nobody observes
        message, delivery = held.message, held.delivery
        # Positional, in field order: keywords cost 0.25 us more per task (bench_metrics.py).
        event = SettledEvent(
            delivery.queue,
            kind.value,
            message.task if message else None,
            message.id if message else None,
            message.attempt if message else None,
            delivery.delivery_count,
            action.reason,
            action.detail,
            action.delay_s,
            time.monotonic() - delivery.received_at,
            held.lost,
        )
        if kind in (ActionKind.RETRY, ActionKind.DEFER) and not held.lost:
            hooks.emit(hooks.on_retry, event)
        elif kind is ActionKind.DEAD_LETTER and not held.lost:
            hooks.emit(hooks.on_dead_letter, event)
        hooks.emit(hooks.on_settled, event)

    async def _fall_back(self, held: Held, action: Action, exc: Exception) -> None:
        """A settle failed in a way no rule foresaw: never leave the delivery wedged.

        A dead letter is tried again bare (reason and a short detail, the body
        kept); anything else is requeued, so the broker counts the delivery
        and ``delivery_limit`` ends a loop. If that fails too, the delivery is
        given up and the broker redelivers it when this consumer closes.
        """
        logger.error(
            "task %s: %s failed (%s: %s); falling back",
            held.label,
            action.kind.value,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        delivery = held.delivery
        fallback: Callable[[], Awaitable[None]]
        if action.kind is ActionKind.DEAD_LETTER:
            bare = DeadLetter(
                queue=delivery.queue,
                reason=action.reason,
                body=delivery.body,
                detail=f"details dropped: recording them failed with {type(exc).__name__}",
                message_id=held.message.id if held.message else None,
            )
            fallback = functools.partial(self._broker.dead_letter, delivery, bare)
        else:
            fallback = functools.partial(self._broker.requeue, delivery)
        try:
            await self._call(held, action.kind, fallback)
        except Exception as second:
            self._mark_lost(held)
            logger.critical(
                "task %s: its fallback settle failed too (%s); left unsettled, the broker "
                "redelivers it when this worker's consumer closes",
                held.label,
                second,
            )

    def _claim(self, held: Held) -> None:
        if held.settled:
            raise AlreadySettled(f"delivery of {held.label} was settled already")
        held.settled = True

    def _operation(
        self,
        held: Held,
        action: Action,
        retry_body: bytes | None,
        error: BaseException | None,
        traceback_text: str | None,
    ) -> Callable[[], object]:
        broker, delivery = self._broker, held.delivery
        kind = action.kind
        if kind is ActionKind.ACK:
            return lambda: broker.ack(delivery)
        if kind is ActionKind.REQUEUE:
            return lambda: broker.requeue(delivery)
        if kind is ActionKind.RELEASE:
            return lambda: broker.release(delivery)
        if kind is ActionKind.RETRY:
            body = _require(retry_body, "retry needs the next attempt's body")
            return lambda: broker.retry(delivery, body, delay_s=action.delay_s)
        if kind is ActionKind.DEFER:
            return lambda: broker.retry(delivery, delivery.body, delay_s=action.delay_s)
        letter = self._letter(held, action, error, traceback_text)
        return lambda: broker.dead_letter(delivery, letter)

    async def _settle_copy(
        self,
        held: Held,
        action: Action,
        retry_body: bytes | None,
        error: BaseException | None,
        traceback_text: str | None,
    ) -> None:
        if action.kind in (ActionKind.RETRY, ActionKind.DEFER):
            body = (
                held.delivery.body
                if action.kind is ActionKind.DEFER
                else _require(retry_body, "retry needs the next attempt's body")
            )
            message_id = held.message.id if held.message else ""
            try:
                await self._broker.publish(
                    held.delivery.queue, body, message_id=message_id, delay_s=action.delay_s
                )
            except QueueFull as exc:
                await self._keep_refused_copy(held, body, exc)
        elif action.kind is ActionKind.DEAD_LETTER:
            await self._broker.add_dead_letter(self._letter(held, action, error, traceback_text))
        else:
            raise AlreadySettled(f"cannot {action.kind.value} {held.label}: acked already")

    async def _keep_refused_copy(self, held: Held, body: bytes, exc: QueueFull) -> None:
        """The queue refused the copy of a message acked already (early ack): the
        copy is the task now, so it is kept as a dead letter ``queue_full``
        (``dlq replay`` puts it back once there is room), never dropped.
        Late-ack settles never come here: they replace a held message and no
        broker refuses them."""
        action = dead_letter("queue_full", str(exc))
        letter = replace(self._letter(held, action, None, None), body=body)
        await self._broker.add_dead_letter(letter)
        logger.error(
            "task %s: its queue is full, so the copy for its next run was dead-lettered "
            "queue_full (replay it when there is room): %s",
            held.label,
            exc,
        )

    async def _call(self, held: Held, kind: ActionKind, operation: Callable[[], object]) -> None:
        """Run a settle operation, riding out short broker outages.

        A stale delivery is not an error here: the broker redelivers it, and
        settling it on another channel or consumer would be wrong.
        """
        for delay_s in (*SETTLE_RETRY_DELAYS_S, None):
            try:
                await operation()  # type: ignore[misc]
                return
            except StaleDelivery as exc:
                self._mark_lost(held)
                word = "lease" if isinstance(exc, LeaseLost) else "delivery"
                logger.warning(
                    "task %s lost its %s before %s; the broker will redeliver it (%s)",
                    held.label,
                    word,
                    kind.value,
                    exc,
                    extra=held.fields(
                        "lease_lost", self._worker_id, action=kind.value, detail=str(exc)
                    ),
                )
                return
            except BrokerUnavailable as exc:
                if delay_s is None:
                    self._mark_lost(held)
                    logger.error(
                        "task %s could not %s: %s; it will be redelivered",
                        held.label,
                        kind.value,
                        exc,
                        extra=held.fields(
                            "settle_failed", self._worker_id, action=kind.value, error=str(exc)
                        ),
                    )
                    return
                await asyncio.sleep(jittered(delay_s))

    def _mark_lost(self, held: Held) -> None:
        held.lost = True
        hooks = self._hooks
        if hooks.on_lost:
            delivery, message = held.delivery, held.message
            event = DeliveryEvent(
                queue=delivery.queue,
                delivery_count=delivery.delivery_count,
                redelivered=delivery.redelivered,
                task=message.task if message else None,
                task_id=message.id if message else None,
                attempt=message.attempt if message else None,
                headers=message.headers if message else {},
            )
            hooks.emit(hooks.on_lost, event)

    def _letter(
        self,
        held: Held,
        action: Action,
        error: BaseException | None,
        traceback_text: str | None,
    ) -> DeadLetter:
        delivery, message = held.delivery, held.message
        return DeadLetter(
            queue=delivery.queue,
            reason=action.reason,
            body=delivery.body,
            detail=action.detail,
            error=f"{type(error).__name__}: {error}" if error is not None else None,
            traceback=traceback_text,
            delivery_count=delivery.delivery_count,
            attempt=message.attempt if message else None,
            message_id=message.id if message else None,
        )

    def _log_settled(
        self, held: Held, action: Action, error: BaseException | None, result: object
    ) -> None:
        level = logging.ERROR if action.kind is ActionKind.DEAD_LETTER else logging.INFO
        if not logger.isEnabledFor(level):
            return  # the hot path builds no log text nobody reads
        elapsed_s = time.monotonic() - held.started_at if held.started_at else None
        elapsed = f"{elapsed_s:.3f}s" if elapsed_s is not None else "-"
        what = _describe(action, held)
        fields = held.fields(
            "not_settled" if held.lost else _EVENTS.get(action.kind, action.kind.value),
            self._worker_id,
            action=action.kind.value,
            duration_s=elapsed_s,
        )
        if action.kind is ActionKind.DEAD_LETTER:
            fields |= {"reason": action.reason, "detail": action.detail}
        elif action.reason:  # acked revoked, deferred for a busy key...
            fields["reason"] = action.reason
        elif action.kind in (ActionKind.RETRY, ActionKind.DEFER):
            fields["delay_s"] = action.delay_s
        if error is not None:
            fields["error"] = f"{type(error).__name__}: {error}"
        if result is not NO_RESULT:
            fields["result"] = result
        kept = f"; {_kept_where(held)}" if action.kind is ActionKind.DEAD_LETTER else ""
        logger.log(
            level,
            "task %s attempt %s %s after %s%s",
            held.label,
            held.attempt,
            what,
            elapsed,
            kept,
            extra=fields,
        )

    # -- leases ------------------------------------------------------------

    def wake(self) -> None:
        """A consumer learned that deliveries went stale: check now, not at the next beat."""
        self._wake.set()

    async def heartbeat(self) -> None:
        """Renew leases until cancelled; report deliveries this worker lost."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._broker.lease_check_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.renew_once()
            raise_swallowed_cancel()  # a shutdown must not wait on this loop for ever

    async def renew_once(self) -> None:
        held = [h for h in self._held.values() if not h.settled]
        if not held:
            return
        try:
            lost = await self._broker.extend([h.delivery for h in held])
        except BrokerError as exc:
            logger.warning("could not renew %d leases: %s", len(held), exc)
            return
        lost_ids = {id(d) for d in lost}
        if self._hooks.on_lease_renewed:
            self._hooks.emit(self._hooks.on_lease_renewed, LeaseEvent(len(held) - len(lost_ids)))
        for h in held:
            if id(h.delivery) in lost_ids and not h.settled:
                h.settled = True
                self._mark_lost(h)
                logger.warning(
                    "task %s lost its delivery (lease or channel); it will be redelivered",
                    h.label,
                    extra=h.fields("lease_lost", self._worker_id),
                )
                with contextlib.suppress(Exception):
                    self._on_lost(h)


def _describe(action: Action, held: Held) -> str:
    kind = action.kind
    if held.lost:
        return "not settled: delivery lost"
    if kind is ActionKind.ACK:
        return f"acked ({action.reason})" if action.reason else "acked"
    if kind is ActionKind.RETRY:
        return f"retry in {action.delay_s:.2f}s"
    if kind is ActionKind.DEFER:
        return f"deferred for {action.delay_s:.2f}s (not an attempt)"
    if kind is ActionKind.DEAD_LETTER:
        # The detail can quote the wire (a malformed header, a bad field name):
        # escaped, so the settle line stays one line whatever a publisher sent.
        detail = action.detail.encode("unicode_escape").decode("ascii")
        return f"dead-lettered: {action.reason}" + (f" ({detail})" if detail else "")
    if kind is ActionKind.REQUEUE:
        return "requeued"
    if kind is ActionKind.RELEASE:
        return "handed back"
    return "done (settled earlier)"


def _kept_where(held: Held) -> str:
    """Where a dead letter is, and the command that finds it again (its id is the
    broker's, known only once stored: list it by queue and task)."""
    queue, message = held.delivery.queue, held.message
    task = f" --task {message.task}" if message is not None and _is_plain(message.task) else ""
    return (
        f"kept in the dead letters of queue {queue}: "
        f"python -m aioack dlq list [MODULE:APP] -Q {queue}{task}"
    )


def _is_plain(name: str) -> bool:
    """A task name safe to print in a command line (a forged one may hold anything)."""
    return name.isprintable() and not any(c.isspace() or c in "'\"$`;|&<>" for c in name)


def _require(value: bytes | None, message: str) -> bytes:
    if value is None:
        raise ValueError(message)
    return value
