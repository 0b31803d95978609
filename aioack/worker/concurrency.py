"""ConcurrencyGate: at most ``limit_concurrency`` runs at once per key, across workers.

Before a run of a limited task starts, the gate takes one of the key's
slots in the result backend, under a lease (the worker's
``idempotency_lease``) renewed every third of it while the run goes on, and
gives it back when the run ends, however it ends. A key at its limit sends
the delivery back to the broker with a delay (DEFER: not an attempt) and
frees the worker slot at once; ``SlotWaits`` picks the delay. A killed
worker's slots free themselves when their leases run out. A run whose slot
lapsed and was taken (its renewals failed for a whole lease) is cancelled
and requeued: two runs over the limit must not go on side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic_core

from aioack._scope import TaskScope
from aioack.decide import Action, ActionKind, dead_letter
from aioack.errors import BrokerError
from aioack.results.base import ResultBackend
from aioack.worker.needs import require_backend_method
from aioack.worker.slotwaits import SlotWaits

if TYPE_CHECKING:
    from aioack.task import Task
    from aioack.worker.runner import Job

logger = logging.getLogger("aioack.worker")

#: A key value longer than this many characters is stored as its SHA-256.
MAX_KEY_CHARS = 128


class InvalidKey(ValueError):
    """Raised when a run's concurrency key cannot be computed (the delivery is refused)."""


@dataclass(slots=True)
class _Slot:
    key: str
    owner: str
    taken_at: float
    renewer: asyncio.Task[None] | None = None
    #: The lease lapsed and another run took the slot: this run was cancelled.
    lost: bool = False


class ConcurrencyGate:
    """Takes, renews and gives back the concurrency slots of the runs of one worker."""

    def __init__(
        self,
        backend: ResultBackend | None,
        *,
        lease_s: float,
        worker_id: str,
        busy_delay_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.lease_s = lease_s
        self._worker_id = worker_id
        self._busy_delay_s = busy_delay_s
        self._clock = clock
        self.waits = SlotWaits(clock)
        #: Owns every slot's renewer: one ends with its run, all with the worker.
        self._renewers = TaskScope("slot-renewers")
        self._numbers = itertools.count(1)
        self._slots: dict[int, _Slot] = {}

    def check(self, tasks: list[Task[Any, Any]]) -> None:
        """Raises ConfigurationError when a limited task has no backend to keep its slots."""
        limited = [t.name for t in tasks if t.options.limit_concurrency is not None]
        require_backend_method(
            self.backend, limited, "limit_concurrency", "acquire_slot", "concurrency slots"
        )

    async def acquire(self, job: Job) -> Action | None:
        """None: the run may start (it holds a slot, if its task is limited).

        Otherwise the Action that settles the delivery now: DEFER (key full, or
        the backend unreachable) or a dead letter (no key could be computed).
        """
        limit, backend = job.task.options.limit_concurrency, self.backend
        if limit is None or backend is None:
            return None
        try:
            key = key_of(job)
        except InvalidKey as exc:
            logger.warning("task %s: %s; dead-lettered", job.held.label, exc)
            return dead_letter("invalid_arguments", str(exc))
        owner = f"{self._worker_id}:{next(self._numbers)}"
        try:
            taken = await backend.acquire_slot(key, limit, owner, self.lease_s)
        except BrokerError as exc:
            logger.warning("task %s: slots unreachable (%s); later", job.held.label, exc)
            return Action(ActionKind.DEFER, delay_s=self._busy_delay_s, reason="concurrency_limit")
        message_id = job.context.id
        if not taken:
            delay_s = self.waits.delay_s(job.task.name, key, limit, message_id)
            logger.info(
                "task %s: key %r at its limit of %d; back in %.2fs",
                job.held.label,
                key,
                limit,
                delay_s,
            )
            return Action(ActionKind.DEFER, delay_s=delay_s, reason="concurrency_limit")
        self.waits.admitted(key, message_id)
        slot = _Slot(key, owner, self._clock())
        slot.renewer = self._renewers.start(
            self._renew(backend, slot, job), name=f"aioack-slot-{message_id}"
        )
        self._slots[id(job.held)] = slot
        return None

    def lost(self, job: Job) -> bool:
        """Whether the run was cancelled because its slot lapsed and was taken."""
        slot = self._slots.get(id(job.held))
        return slot is not None and slot.lost

    def holds(self, job: Job) -> bool:
        return id(job.held) in self._slots

    async def release(self, job: Job, *, ran: bool) -> None:
        """Give the run's slot back (best effort: a lease frees it anyway).

        ``ran``: the task body ran, so its hold time counts for the waits.
        """
        slot = self._slots.pop(id(job.held), None)
        if slot is None:
            return
        thread = job.thread
        if thread is not None and not thread.done():
            # A plain def abandoned by a cancel (time limit, revoke) runs on in
            # its thread: the slot stays taken, and renewed, until it returns.
            self._renewers.start(
                self._give_back_after(thread, job, slot, ran=ran),
                name=f"aioack-slot-wait-{job.context.id}",
            )
            return
        await self._give_back(job, slot, ran=ran)

    async def _give_back_after(
        self, thread: asyncio.Future[Any], job: Job, slot: _Slot, *, ran: bool
    ) -> None:
        await asyncio.wait({thread})
        await self._give_back(job, slot, ran=ran)

    async def _give_back(self, job: Job, slot: _Slot, *, ran: bool) -> None:
        if slot.renewer is not None:
            await self._renewers.cancel([slot.renewer])
        if ran:
            self.waits.ran(job.task.name, self._clock() - slot.taken_at)
        if self.backend is not None and not slot.lost:
            with contextlib.suppress(BrokerError):
                await self.backend.release_slot(slot.key, slot.owner)

    async def aclose(self) -> None:
        """The worker stops: no renewer outlives it."""
        await self._renewers.cancel()

    async def _renew(self, backend: ResultBackend, slot: _Slot, job: Job) -> None:
        # A third of the lease: two renewals may fail before the slot lapses.
        label = job.held.label
        renewed_at = self._clock()
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                renewed = await backend.renew_slot(slot.key, slot.owner, self.lease_s)
            except BrokerError as exc:
                logger.warning("task %s could not renew its slot of %r: %s", label, slot.key, exc)
                # Unrenewed for a whole lease, the slot has lapsed: another worker
                # may hold it now, so this run stops without waiting to hear so.
                renewed = self._clock() - renewed_at < self.lease_s
                if renewed:
                    continue
            else:
                renewed_at = self._clock()
            if not renewed:
                # Its lease lapsed and another run took the slot: the key may be
                # at its limit without this run, so this run stops (and is requeued).
                logger.warning(
                    "task %s lost its slot of key %r (lease lapsed); cancelling it, to run later",
                    label,
                    slot.key,
                )
                slot.lost = True
                if job.held.body is not None:
                    job.held.body.cancel()
                return


def key_of(job: Job) -> str:
    """The stored key of a run: ``{task name}:{key value}``, or the task name alone.

    Raises:
        InvalidKey: the key callable raised or returned something other than
            a str or an int, or the argument's value is not JSON.
    """
    task = job.task
    source = task.options.concurrency_key
    if source is None:
        return task.name  # one limit for the whole task, across the fleet
    arguments = _arguments(job)
    text = _text(arguments.get(source)) if isinstance(source, str) else _called(source, arguments)
    if len(text) > MAX_KEY_CHARS:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return f"{task.name}:{text}"


def _arguments(job: Job) -> dict[str, Any]:
    """The run's arguments by name, defaults applied, without its TaskContext."""
    signature = job.task.signature
    if job.args:  # the slow call shape: positional values (only then is binding needed)
        bound = signature.full.bind(*job.args, **job.kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
    else:
        values = dict(job.kwargs)
    if signature.context_param is not None:
        values.pop(signature.context_param, None)
    return values


def _text(value: Any) -> str:
    """A key value as text, the same in every process: JSON unless a str or an int."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    try:
        plain = pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError as exc:
        raise InvalidKey(f"concurrency key value is not JSON: {exc}") from exc
    return json.dumps(plain, sort_keys=True, separators=(",", ":"))


def _called(source: Callable[[dict[str, Any]], Any], arguments: dict[str, Any]) -> str:
    try:
        value = source(arguments)
    except Exception as exc:  # the user's function: any error refuses the delivery
        raise InvalidKey(f"concurrency_key raised {type(exc).__name__}: {exc}"[:300]) from exc
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: close it so no warning is left behind
        raise InvalidKey("concurrency_key must be a plain function; it returned an awaitable")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidKey(
            f"concurrency_key must return a str or an int, it returned {type(value).__name__}"
        )
    return str(value)
