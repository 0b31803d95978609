"""Worker: consume, run under a concurrency bound, settle, shut down gracefully.

Two loops share one AckManager: the receiver pulls deliveries (the broker
bounds them by prefetch), checks them and starts a run when a concurrency
slot is free (else queues it: the end of a run starts the next); the
heartbeat renews leases of everything held.
Every task the worker starts belongs to one of its scopes (loops, runs, the
result flow's renewers), and none is alive once ``run()`` has returned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from aioack._backoff import jittered
from aioack._memory import release_freed_memory
from aioack._scope import TaskScope
from aioack.brokers.base import BrokerAdmin, BrokerCore, Consumer, WorkerRecord
from aioack.decide import (
    NOTHING,
    RELEASE,
    REQUEUE,
    REVOKED,
    Action,
    ActionKind,
    Outcome,
    OutcomeKind,
    dead_letter,
    decide,
)
from aioack.errors import BrokerError, ConfigurationError
from aioack.hooks import ConnectionEvent, DeliveryEvent, FinishedEvent, Hooks, WorkerEvent
from aioack.results.base import ResultBackend
from aioack.task import CURRENT_TASK_ID, Task
from aioack.worker.ackmanager import NO_RESULT, AckManager, Held
from aioack.worker.resultflow import ResultFlow
from aioack.worker.revocations import Revocations
from aioack.worker.runner import Checks, Job, RunResult, execute, prepare
from aioack.worker.settings import CLOSE_ALLOWANCE_S, Redactor, WorkerSettings
from aioack.worker.shutdown import Stopping, signals
from aioack.worker.watermarks import sample, watched
from aioack.worker.workflows import Workflows

logger = logging.getLogger("aioack.worker")

#: Outcomes that carry an error but are not a failure of the task's code.
_NOT_TASK_FAILURES = frozenset({OutcomeKind.RETRY_REQUESTED, OutcomeKind.INTERRUPTED})

#: Burst mode: seconds a delayed copy may take from its due time into its queue
#: (RabbitMQ: 5-13 ms per delay level measured, up to 32 levels).
DELAY_TRANSIT_S = 0.5

#: Longest pause (seconds, before jitter) between receive attempts while the broker is down.
MAX_RECONNECT_BACKOFF_S = 5.0


class Worker:
    """Runs tasks from a broker. ``App.worker()`` builds one from an App.

    It gets only what it needs: the tasks by name, a broker to move and settle
    deliveries, a result store (or None), its settings and hooks.
    """

    def __init__(
        self,
        tasks: Mapping[str, Task[Any, Any]],
        broker: BrokerCore,
        settings: WorkerSettings,
        *,
        results: ResultBackend | None = None,
        hooks: Hooks | Iterable[object] = (),
        log_values: Redactor | None = None,
    ) -> None:
        self.tasks = tasks
        #: Decides what of arguments and return values the log lines may carry
        #: (none without it).
        self.log_values = log_values
        self.broker = broker
        self.results = results
        self.settings = settings
        self.hooks = hooks if isinstance(hooks, Hooks) else Hooks(hooks)
        self.id = uuid.uuid4().hex[:12]
        #: True after a second stop request cut the grace period short.
        self.forced = False
        #: True after the grace period (shutdown_timeout) ran out with tasks still
        #: running: they were cancelled and handed back.
        self.timed_out = False
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._started = asyncio.Event()
        #: Checked jobs waiting for a concurrency slot, oldest first.
        self._ready: deque[Job] = deque()
        self._free_slots = settings.concurrency
        self._loops = TaskScope("loops", close_timeout_s=CLOSE_ALLOWANCE_S)
        self._runs = TaskScope("runs", close_timeout_s=CLOSE_ALLOWANCE_S, on_done=self._run_done)
        self._embedded = TaskScope("embedded", close_timeout_s=CLOSE_ALLOWANCE_S)
        #: Runs whose delivery was lost, by message id, until they end.
        self._winding_down: dict[str, asyncio.Task[None]] = {}
        self._acks: AckManager | None = None
        #: Task ids not to run (app.revoke()), followed from the result backend.
        self._revocations = Revocations(results, self._terminate)
        #: Message ids whose running copy a revoke(terminate=True) cancelled.
        self._terminated: set[str] = set()
        self._checks = Checks(tasks, settings.max_message_bytes, results, self._revocations)
        self._results = ResultFlow(results, lease_s=settings.idempotency_lease, worker_id=self.id)
        if results is not None:
            self._results.workflows = Workflows(
                tasks, broker, results, max_message_bytes=settings.max_message_bytes
            )
        self._background: asyncio.Task[None] | None = None
        self._connection_lost = False
        self._idle_checks = 0
        #: Unix time the worker started consuming (0 before).
        self.started_at = 0.0

    # -- public lifecycle --------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully; a second call stops at once (no grace period)."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def __aenter__(self) -> Worker:
        """Run in the background of the current loop (embedding); no signal handlers."""
        self._background = self._embedded.start(self.run(), name="aioack-worker")
        started = self._embedded.start(self._started.wait(), name="aioack-worker-started")
        await asyncio.wait({self._background, started}, return_when=asyncio.FIRST_COMPLETED)
        await self._embedded.cancel([started])
        if self._background.done():
            self._background.result()  # re-raise a start-up failure
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._stop.is_set():  # stopped already: leaving is not a second stop
            self.stop()
        if self._background is not None:
            await self._background

    async def run(self, *, burst: bool = False, install_signal_handlers: bool = False) -> None:
        """Consume until ``stop()`` (or, with ``burst``, until the queues are empty).

        Raises:
            BrokerUnavailable: the broker cannot be reached at start.
            ConfigurationError: bad settings, or settings the broker refuses.
        """
        if burst and not isinstance(self.broker, BrokerAdmin):
            raise ConfigurationError("burst mode needs a broker that can count its queues")
        consumer = await self._start()
        acks = self._acks = AckManager(
            self.broker, on_lost=self._on_lost, hooks=self.hooks, worker_id=self.id
        )
        consumer.watch_losses(acks.wake)
        receive = self._loops.start(self._receive(consumer, acks, burst), name="aioack-receive")
        heartbeat = self._loops.start(acks.heartbeat(), name="aioack-heartbeat")
        if self._revocations.enabled:
            self._loops.start(self._revocations.watch(), name="aioack-revocations")
        self._loops.start(self._announcing(), name="aioack-announce")
        marks = watched(self.broker, self.settings.queues)
        if marks is not None and isinstance(self.broker, BrokerAdmin):
            # Ends with the other loops, when the scope closes at shutdown.
            self._loops.start(sample(self.broker, marks, self.hooks), name="aioack-watermarks")
        crashed: BaseException | None = None
        with signals(self._on_signal, install_signal_handlers):
            self._started.set()
            self._emit_worker(self.hooks.on_worker_started)
            try:
                crashed = await self._wait_for_stop([receive, heartbeat])
            finally:
                await self._shutdown(consumer, acks, [receive], heartbeat)
        if crashed is not None:
            raise crashed

    async def _wait_for_stop(self, loops: list[asyncio.Task[None]]) -> BaseException | None:
        """Wait for stop(); a loop that died of a bug stops the worker too (no silent hang)."""
        stop = self._loops.start(self._stop.wait(), name="aioack-stop")
        waiting: set[asyncio.Task[Any]] = {stop, *loops}
        try:
            while not stop.done():
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for loop_task in (t for t in loops if t in done):
                    waiting.discard(loop_task)
                    error = None if loop_task.cancelled() else loop_task.exception()
                    if error is not None:
                        logger.critical(
                            "worker loop %s crashed", loop_task.get_name(), exc_info=error
                        )
                        return error
            return None
        finally:
            await self._loops.cancel([stop])

    def _on_signal(self, sig: signal.Signals) -> None:
        again = self._stop.is_set()
        logger.warning(
            "%s received: %s", sig.name, "stopping now" if again else "stopping gracefully"
        )
        self.stop()

    # -- start -------------------------------------------------------------

    async def _start(self) -> Consumer:
        settings, broker = self.settings, self.broker
        mine = [t for t in self.tasks.values() if t.options.queue in settings.queues]
        self._results.check(mine)
        await broker.connect()
        if self.results is not None:
            await self.results.connect()
        await self._revocations.load()  # before consuming: an earlier revoke still holds
        await broker.declare(settings.queues)
        for warning in await broker.preflight({t.name: t.options.time_limit for t in mine}):
            logger.warning("%s", warning)
        if settings.prefetch < settings.concurrency:
            logger.warning(
                "prefetch %d < concurrency %d: at most %d tasks run at once; raise --prefetch",
                settings.prefetch,
                settings.concurrency,
                settings.prefetch,
            )
        self.started_at = time.time()
        await self._announce()  # before consuming: RabbitMQ's consumers carry the record
        consumer = await broker.consume(settings.queues, prefetch=settings.prefetch)
        results = self.results.location if self.results is not None else "none"
        logger.info(
            "worker ready: broker=%s results=%s queues=%s concurrency=%d prefetch=%d tasks=%d "
            "(elsewhere: --broker/--results or AIOACK_BROKER_URL/AIOACK_RESULTS_URL)",
            broker.location,
            results,
            ",".join(settings.queues),
            settings.concurrency,
            settings.prefetch,
            len(self.tasks),
            extra={
                "event": "worker_started",
                "worker_id": self.id,
                "broker": broker.location,
                "results": results,
                "queues": list(settings.queues),
                "concurrency": settings.concurrency,
                "prefetch": settings.prefetch,
            },
        )
        return consumer

    # -- telling inspect we are here ------------------------------------------

    def record(self) -> WorkerRecord:
        """What this worker says of itself to ``aioack inspect``."""
        settings = self.settings
        return WorkerRecord(
            worker_id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=tuple(settings.queues),
            concurrency=settings.concurrency,
            in_flight=len(self._runs.tasks),
            started_at=self.started_at,
            seen_at=time.time(),
        )

    async def _announce(self) -> None:
        ttl_s = 3 * self.settings.announce_interval
        try:
            await self.broker.announce(self.record(), ttl_s)
        except BrokerError as exc:  # informational: never a reason to stop working
            logger.warning("could not announce this worker to inspect: %s", exc)

    async def _announcing(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.settings.announce_interval)
            await self._announce()

    def _emit_worker(self, methods: tuple[Any, ...]) -> None:
        if methods:
            settings = self.settings
            event = WorkerEvent(
                worker_id=self.id,
                queues=tuple(settings.queues),
                concurrency=settings.concurrency,
                prefetch=settings.prefetch,
                forced=self._force.is_set(),
            )
            self.hooks.emit(methods, event)

    # -- receiving ---------------------------------------------------------

    async def _receive(self, consumer: Consumer, acks: AckManager, burst: bool) -> None:
        poll_s = min(self.settings.poll_interval, 0.1) if burst else self.settings.poll_interval
        backoff_s = 0.0
        # The stop flag, not only cancellation, ends the loop: a client library
        # that swallows a CancelledError must not keep a stopping worker alive.
        while not self._stop.is_set():
            try:
                delivery = await consumer.get(poll_s)
            except BrokerError as exc:
                self._connection(lost=exc)
                backoff_s = min(MAX_RECONNECT_BACKOFF_S, backoff_s * 2 or 0.1)
                logger.warning(
                    "receive failed (%s); retrying in about %.1fs",
                    exc,
                    backoff_s,
                    extra={"event": "connection_lost", "worker_id": self.id, "error": str(exc)},
                )
                await asyncio.sleep(jittered(backoff_s))  # a fleet must not return in lockstep
                continue
            if backoff_s:
                backoff_s = 0.0
                self._connection(lost=None)
            if delivery is None:
                if burst and await self._idle():
                    logger.info("burst: queues are empty, stopping")
                    self.stop()
                    return
                continue
            held = acks.receive(delivery)
            oversized = len(delivery.body) > self.settings.max_message_bytes
            try:
                await self._admit(held, acks)
            except Exception as exc:  # a bug, or input no check foresaw: never the loop's end
                await self._refuse_unreadable(held, acks, exc)
            if oversized:  # dead-lettered too_large: its buffers are free now
                del delivery, held
                release_freed_memory()

    def _connection(self, *, lost: BrokerError | None) -> None:
        """Report a lost connection once, and its return once."""
        hooks = self.hooks
        if lost is not None and not self._connection_lost:
            self._connection_lost = True
            if hooks.on_connection_lost:
                event = ConnectionEvent(type(self.broker).__name__, str(lost))
                hooks.emit(hooks.on_connection_lost, event)
        elif lost is None and self._connection_lost:
            self._connection_lost = False
            logger.info(
                "receiving again: the broker connection is back",
                extra={"event": "connection_restored", "worker_id": self.id},
            )
            if hooks.on_connection_restored:
                event = ConnectionEvent(type(self.broker).__name__)
                hooks.emit(hooks.on_connection_restored, event)

    async def _refuse_unreadable(self, held: Held, acks: AckManager, exc: Exception) -> None:
        logger.error(
            "could not check a delivery on %s; dead-lettering it", held.delivery.queue, exc_info=exc
        )
        if held.settled:
            return
        detail = f"internal error while checking it: {type(exc).__name__}: {exc}"[:500]
        try:
            await acks.settle(held, dead_letter("malformed", detail))
        except Exception:
            logger.exception("could not dead-letter it either; the broker will redeliver it")

    async def _admit(self, held: Held, acks: AckManager) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            delivery = held.delivery
            logger.debug(
                "delivery received on %s (delivery %d%s)",
                delivery.queue,
                delivery.delivery_count,
                ", redelivered" if delivery.redelivered else "",
                extra={
                    "event": "received",
                    "queue": delivery.queue,
                    "delivery_count": delivery.delivery_count,
                    "redelivered": delivery.redelivered,
                    "worker_id": self.id,
                },
            )
        hooks = self.hooks
        if hooks.on_received:
            delivery = held.delivery
            event = DeliveryEvent(delivery.queue, delivery.delivery_count, delivery.redelivered)
            hooks.emit(hooks.on_received, event)
        job_or_action = prepare(self._checks, held, lambda: acks.ack_early(held))
        if isinstance(job_or_action, Action):
            await self._results.refused(held, job_or_action)
            await acks.settle(held, job_or_action)
            return
        self._dispatch(job_or_action)

    async def _idle(self) -> bool:
        """Burst mode: nothing here or on the broker, twice in a row."""
        acks = self._acks
        if self._ready or self._runs.tasks or (acks is not None and acks.held_count):
            self._idle_checks = 0
            return False
        # A delayed copy this worker published is in transit until due (and,
        # on RabbitMQ, between delay levels it is briefly in no queue's count).
        if acks is not None and time.monotonic() < acks.delayed_until + DELAY_TRANSIT_S:
            return False
        admin = self.broker
        assert isinstance(admin, BrokerAdmin)  # checked by run(burst=True)
        for queue in self.settings.queues:
            # pending counts unacked too: an entry in a consumer's read-ahead
            # buffer, or held by a dead worker, is work still to do.
            if (await admin.stats(queue)).pending:
                self._idle_checks = 0
                return False
        self._idle_checks += 1
        return self._idle_checks >= 2

    # -- running -----------------------------------------------------------

    # Dispatch is synchronous: a job starts in the same step that checked it
    # when a slot is free, and a run's end starts the next waiting job. A
    # dispatcher task between a queue and a semaphore cost an event-loop
    # step, a future and two awaits per run.
    def _dispatch(self, job: Job) -> None:
        if self._free_slots and not self._stop.is_set():
            self._start_run(job)
        else:  # handed back unstarted if the worker stops first
            self._ready.append(job)

    def _start_run(self, job: Job) -> None:
        self._runs.start(self._run(job), name=f"aioack-run-{job.context.id}")
        self._free_slots -= 1  # after: a start that raised (a closed loop) takes no slot

    def _run_done(self, run: asyncio.Task[None]) -> None:
        self._free_slots += 1
        if self._ready and not self._stop.is_set():
            self._start_run(self._ready.popleft())

    async def _run(self, job: Job) -> None:
        # One coroutine per run, steps inline: a nested call here is paid per task.
        try:
            held, acks = job.held, self._acks
            assert acks is not None
            refusal = self._refusal_at_slot(job)
            if refusal is not None:  # lost, expired or revoked while waiting for a slot
                await self._results.refused(held, refusal)
                await acks.settle(held, refusal)
                return
            winding_down = self._winding_down.get(job.context.id)
            if winding_down is not None:
                # The broker redelivered a message whose lost run here is still
                # ending (cancelled, in its cleanup): never two runs of it at once.
                await asyncio.wait({winding_down})
            held.started_at = time.monotonic()
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "task %s attempt %d started (delivery %d%s)",
                    held.label,
                    job.context.attempt,
                    job.context.delivery_count,
                    ", redelivered" if job.context.redelivered else "",
                    extra=self._started_fields(job),
                )
            # Without a result backend the result flow has nothing to do: no
            # claim, slot, token or record (no call for it on the hot path).
            gate = await self._results.before_run(job) if self.results is not None else None
            if gate is not None:
                # Not run (key completed, or held by a live run): settle now; a
                # DEFER sends the same message back, attempt unchanged.
                action = NOTHING if held.settled and gate.kind is ActionKind.ACK else gate
                await acks.settle(held, action)
                return
            if not job.task.options.acks_late:
                # Early ack when the run starts, not on receipt: a prefetched,
                # unstarted message must still be handed back on shutdown.
                await acks.ack_early(held)
            if job.context.id in self._revocations:  # revoked while it was starting
                await self._results.end(job)  # its slot and claim go back first
                await self._results.refused(held, REVOKED)
                await acks.settle(held, NOTHING if held.settled else REVOKED)
                return
            if held.lost:  # lost during the claim or the early ack: never start it
                result = RunResult(Outcome(OutcomeKind.LOST))
            else:
                result = await self._execute(job)
            if self.results is not None:
                result = self._results.encode(job, result)
            await self._settle(job, result)
        except Exception:  # a bug in the worker or a backend: never a wedged delivery
            logger.exception("task %s: internal error; its delivery is requeued", job.held.label)
            if not job.held.settled and self._acks is not None:
                await self._acks.settle(job.held, REQUEUE)  # counted: delivery_limit ends it
        finally:
            # However the run ended (a bug, a cancel), its claim's renewer stops
            # with it and an unfinished claim is released (off the hot path: a
            # settled run holds none).
            if self.results is not None and self._results.holds(job):
                await self._results.end(job)

    def _refusal_at_slot(self, job: Job) -> Action | None:
        """Why a run that got its worker slot must not start, or None."""
        if job.held.lost:  # another worker has it now
            return NOTHING
        if job.message.is_expired(time.time()):
            return dead_letter("expired", "expired while waiting for a slot")
        if job.context.id in self._revocations:
            return REVOKED
        return None

    async def _execute(self, job: Job) -> RunResult:
        """Run the task function; a cancel while it runs becomes an Outcome."""
        held, hooks = job.held, self.hooks
        if hooks.on_started:
            hooks.emit(hooks.on_started, _delivery_event(job))
        token = CURRENT_TASK_ID.set(job.context.id)  # result.get() inside a task: guarded
        held.body = asyncio.current_task()
        try:
            result = await execute(job)
            return self._results.interrupted(job) or result
        except asyncio.CancelledError:
            _uncancel()
            return RunResult(Outcome(self._why_cancelled(job)))
        finally:
            held.body = None
            CURRENT_TASK_ID.reset(token)

    async def _settle(self, job: Job, result: RunResult) -> None:
        held, acks = job.held, self._acks
        assert acks is not None and held.message is not None
        outcome = result.outcome
        error = outcome.error
        if error is not None and outcome.kind not in _NOT_TASK_FAILURES:
            logger.warning(
                "task %s attempt %d raised %s: %s",
                held.label,
                job.context.attempt,
                type(error).__name__,
                _one_line(str(error)),
                extra=held.fields(
                    "failed",
                    self.id,
                    error=f"{type(error).__name__}: {error}",
                    traceback=result.traceback_text,
                ),
            )
        if self.hooks.on_finished:
            self.hooks.emit(self.hooks.on_finished, _finished_event(job, result))
        action = decide(
            outcome, attempt=job.context.attempt, options=job.task.options, settled=held.settled
        )
        # Late ack: the result is stored before the settle goes out; a failed
        # store turns the ack into a requeue (never a lost result).
        if self.results is not None:
            action = await self._results.after_run(job, result, action)
        retry_body = (
            held.message.next_attempt().encode(self.settings.max_message_bytes)
            if action.kind is ActionKind.RETRY
            else None
        )
        logged: object = NO_RESULT
        if self.log_values is not None and outcome.kind is OutcomeKind.SUCCEEDED:
            logged = self._redacted(job, "result", result.value)
        await acks.settle(
            held,
            action,
            retry_body=retry_body,
            error=error,
            traceback_text=result.traceback_text,
            logged_result=logged,
        )

    def _started_fields(self, job: Job) -> dict[str, object]:
        fields = job.held.fields("started", self.id, redelivered=job.context.redelivered)
        if self.log_values is not None:
            message = job.message
            fields["arguments"] = self._redacted(
                job, "arguments", {"args": message.args, "kwargs": message.kwargs}
            )
        return fields

    def _redacted(self, job: Job, what: str, value: object) -> object:
        """What the redactor lets be logged of a value; it failing logs nothing of it."""
        assert self.log_values is not None
        try:
            return self.log_values(job.task.name, what, value)
        except Exception as exc:
            logger.error("the log_values redactor raised %s; nothing logged", type(exc).__name__)
            return None

    def _why_cancelled(self, job: Job) -> OutcomeKind:
        if job.held.lost:
            return OutcomeKind.LOST
        if self._results.claim_lost(job):
            return OutcomeKind.CLAIM_LOST
        if self._results.slots.lost(job):
            return OutcomeKind.SLOT_LOST
        if job.context.id in self._terminated:
            self._terminated.discard(job.context.id)
            return OutcomeKind.REVOKED
        return OutcomeKind.SHUTDOWN

    def _terminate(self, task_id: str) -> None:
        """revoke(terminate=True): cancel the runs of ``task_id`` going on here now."""
        if self._acks is None:
            return
        for held in self._acks.holding(task_id):
            body = held.body
            if body is not None and not body.done():
                logger.warning(
                    "task %s revoked with terminate=True: cancelling its run",
                    held.label,
                    extra=held.fields("terminated", self.id),
                )
                self._terminated.add(task_id)
                body.cancel()

    def _on_lost(self, held: Held) -> None:
        body = held.body
        if body is None or held.message is None:
            return
        message_id = held.message.id
        self._winding_down[message_id] = body
        body.add_done_callback(lambda _: self._forget_winding_down(message_id, body))
        if self.settings.cancel_on_lost_delivery:
            body.cancel()

    def _forget_winding_down(self, message_id: str, body: asyncio.Task[None]) -> None:
        if self._winding_down.get(message_id) is body:
            del self._winding_down[message_id]

    # -- shutdown ----------------------------------------------------------

    async def _shutdown(
        self,
        consumer: Consumer,
        acks: AckManager,
        loops: list[asyncio.Task[None]],
        heartbeat: asyncio.Task[None],
    ) -> None:
        # Order matters: stop taking work first, hand back what never started,
        # and keep the heartbeat renewing leases while running tasks finish.
        self._stop.set()  # also when run() was cancelled or a loop crashed: start nothing new
        self._emit_worker(self.hooks.on_worker_stopping)
        stopping = Stopping(self._force, self.settings.shutdown_timeout)
        try:
            await self._loops.cancel(loops)
            await stopping.step("cancel the consumer", consumer.cancel())
            await stopping.step("hand back unstarted deliveries", self._hand_back_unstarted(acks))
            await stopping.drain(self._runs, self.settings.shutdown_timeout)
            self.forced, self.timed_out = stopping.forced, stopping.timed_out
            await self._loops.cancel([heartbeat])
            await stopping.step("close the consumer", consumer.close(), closing=True)
            await stopping.step("retire from inspect", self.broker.retire(self.id), closing=True)
        finally:
            # Whatever went wrong above, nothing the worker started outlives run().
            await self._runs.cancel()
            await self._loops.cancel()
            await self._results.aclose()
            await stopping.aclose()
        logger.info(
            "worker stopped%s",
            " (forced)"
            if self.forced
            else " (shutdown_timeout ran out: running tasks cancelled)"
            if self.timed_out
            else "",
            extra={
                "event": "worker_stopped",
                "worker_id": self.id,
                "forced": self.forced,
                "timed_out": self.timed_out,
            },
        )

    async def _hand_back_unstarted(self, acks: AckManager) -> None:
        handed_back = 0
        while self._ready:
            job = self._ready.popleft()
            if not job.held.settled:
                await acks.settle(job.held, RELEASE)
                handed_back += 1
        if handed_back:
            logger.info("handed back %d prefetched, unstarted deliveries", handed_back)


def _uncancel() -> None:
    """We handle our own cancellation; clear the count so later timeouts work."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


# Positional arguments, in field order: these run once per task when hooks observe.
def _delivery_event(job: Job) -> DeliveryEvent:
    ctx = job.context
    return DeliveryEvent(
        ctx.queue,
        ctx.delivery_count,
        ctx.redelivered,
        ctx.task_name,
        ctx.id,
        ctx.attempt,
        job.message.headers,
    )


def _finished_event(job: Job, result: RunResult) -> FinishedEvent:
    ctx, started_at, outcome = job.context, job.held.started_at, result.outcome
    return FinishedEvent(
        ctx.task_name,
        ctx.id,
        ctx.queue,
        ctx.attempt,
        outcome.kind._value_,
        time.monotonic() - started_at if started_at else 0.0,
        outcome.error,
        result.traceback_text,
    )


def _one_line(text: str) -> str:
    """An exception's message on the event's line: newlines escaped, long ones cut."""
    flat = text.replace("\r", "\\r").replace("\n", "\\n")
    return flat if len(flat) <= 300 else flat[:297] + "..."
