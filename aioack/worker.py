"""Worker: consume, run under a concurrency bound, settle, shut down gracefully.

Three loops share one AckManager: the receiver pulls deliveries (the broker
bounds them by prefetch) and checks them; the dispatcher starts runs when a
concurrency slot is free; the heartbeat renews leases of everything held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aioack._memory import release_freed_memory
from aioack.ackmanager import AckManager, Held
from aioack.brokers.base import Consumer
from aioack.decide import (
    NOTHING,
    RELEASE,
    Action,
    ActionKind,
    Outcome,
    OutcomeKind,
    dead_letter,
    decide,
)
from aioack.errors import BrokerError
from aioack.options import check_queue_name
from aioack.resultflow import ResultFlow
from aioack.runner import Job, RunResult, execute, prepare
from aioack.task import CURRENT_TASK_ID

if TYPE_CHECKING:
    from aioack.app import App

logger = logging.getLogger("aioack.worker")

#: Outcomes that carry an error but are not a failure of the task's code.
_NOT_TASK_FAILURES = frozenset({OutcomeKind.RETRY_REQUESTED, OutcomeKind.INTERRUPTED})

#: Seconds a stopping worker still gives closing steps (consumer, connection)
#: after its grace deadline, so a stop is bounded by shutdown_timeout + this.
CLOSE_ALLOWANCE_S = 1.0

#: Longest pause (seconds) between receive attempts while the broker is down.
MAX_RECONNECT_BACKOFF_S = 5.0


class WorkerSettings(BaseModel):
    """Worker settings; a typo or an impossible value fails at start-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queues: list[str] = Field(min_length=1)
    concurrency: int = Field(default=10, ge=1, le=100_000)
    prefetch: int = Field(default=20, ge=1, le=100_000)
    #: Seconds running tasks get to finish after a stop, before they are
    #: cancelled and handed back.
    shutdown_timeout: float = Field(default=30.0, ge=0)
    #: Cancel a run whose delivery this worker lost (lease, connection).
    cancel_on_lost_delivery: bool = True
    #: Longest wait (seconds) for one delivery before the loop checks its state.
    poll_interval: float = Field(default=1.0, gt=0)

    @field_validator("queues")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return [check_queue_name(q) for q in value]


FailureHook = Callable[[Job, BaseException], None]


class Worker:
    """Runs the tasks of one App from its broker. See ``App.worker()``."""

    def __init__(self, app: App, settings: WorkerSettings) -> None:
        self.app = app
        self.settings = settings
        #: Called with every exception a task raised (the testing helper uses it).
        self.on_failure: FailureHook | None = None
        #: True after a second stop request cut the grace period short.
        self.forced = False
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._started = asyncio.Event()
        self._ready: asyncio.Queue[Job] = asyncio.Queue()
        self._running: set[asyncio.Task[None]] = set()
        #: Runs whose delivery was lost, by message id, until they end.
        self._winding_down: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._acks: AckManager | None = None
        self._results = ResultFlow(app)
        self._background: asyncio.Task[None] | None = None

    # -- public lifecycle --------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully; a second call stops at once (no grace period)."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def __aenter__(self) -> Worker:
        """Run in the background of the current loop (embedding); no signal handlers."""
        self._background = asyncio.create_task(self.run())
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({self._background, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
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
            ConfigurationError: the broker refuses the settings.
        """
        consumer = await self._start()
        acks = self._acks = AckManager(self.app.broker, on_lost=self._on_lost)
        consumer.watch_losses(acks.wake)
        loops = [
            asyncio.create_task(self._receive(consumer, acks, burst), name="aioack-receive"),
            asyncio.create_task(self._dispatch(), name="aioack-dispatch"),
        ]
        heartbeat = asyncio.create_task(acks.heartbeat(), name="aioack-heartbeat")
        with _signals(self, install_signal_handlers):
            self._started.set()
            try:
                crashed = await self._wait_for_stop(loops)
            finally:
                await self._shutdown(consumer, acks, loops, heartbeat)
        if crashed is not None:
            raise crashed

    async def _wait_for_stop(self, loops: list[asyncio.Task[None]]) -> BaseException | None:
        """Wait for stop(); a loop that died of a bug stops the worker too (no silent hang)."""
        stop = asyncio.create_task(self._stop.wait())
        waiting: set[asyncio.Future[Any]] = {stop, *loops}
        while not stop.done():
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for loop_task in (t for t in loops if t in done):
                waiting.discard(loop_task)
                error = None if loop_task.cancelled() else loop_task.exception()
                if error is not None:
                    logger.critical("worker loop %s crashed", loop_task.get_name(), exc_info=error)
                    stop.cancel()
                    return error
        return None

    # -- start -------------------------------------------------------------

    async def _start(self) -> Consumer:
        settings, broker = self.settings, self.app.broker
        self._results.check(
            [t for t in self.app.tasks.values() if t.options.queue in settings.queues]
        )
        await self.app.connect()
        await broker.declare(settings.queues)
        limits = {
            t.name: t.options.time_limit
            for t in self.app.tasks.values()
            if t.options.queue in settings.queues
        }
        for warning in await broker.preflight(limits):
            logger.warning("%s", warning)
        if settings.prefetch < settings.concurrency:
            logger.warning(
                "prefetch %d < concurrency %d: at most %d tasks run at once; raise --prefetch",
                settings.prefetch,
                settings.concurrency,
                settings.prefetch,
            )
        consumer = await broker.consume(settings.queues, prefetch=settings.prefetch)
        logger.info(
            "worker ready: broker=%s queues=%s concurrency=%d prefetch=%d tasks=%d",
            type(broker).__name__,
            ",".join(settings.queues),
            settings.concurrency,
            settings.prefetch,
            len(self.app.tasks),
        )
        return consumer

    # -- receiving ---------------------------------------------------------

    async def _receive(self, consumer: Consumer, acks: AckManager, burst: bool) -> None:
        poll_s = min(self.settings.poll_interval, 0.1) if burst else self.settings.poll_interval
        backoff_s = 0.0
        # The stop flag, not only cancellation, ends the loop: a client library
        # that swallows a CancelledError must not keep a stopping worker alive.
        while not self._stop.is_set():
            try:
                delivery = await consumer.get(poll_s)
                backoff_s = 0.0
            except BrokerError as exc:
                backoff_s = min(MAX_RECONNECT_BACKOFF_S, backoff_s * 2 or 0.1)
                logger.warning("receive failed (%s); retrying in %.1fs", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                continue
            if delivery is None:
                if burst and await self._idle():
                    logger.info("burst: queues are empty, stopping")
                    self.stop()
                    return
                continue
            held = acks.receive(delivery)
            oversized = len(delivery.body) > self.app.max_message_bytes
            try:
                await self._admit(held, acks)
            except Exception as exc:  # a bug, or input no check foresaw: never the loop's end
                await self._refuse_unreadable(held, acks, exc)
            if oversized:  # dead-lettered too_large: its buffers are free now
                del delivery, held
                release_freed_memory()

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
        job_or_action = prepare(self.app, held, lambda: acks.ack_early(held))
        if isinstance(job_or_action, Action):
            await self._results.refused(held, job_or_action)
            await acks.settle(held, job_or_action)
            return
        self._ready.put_nowait(job_or_action)

    async def _idle(self) -> bool:
        if not self._ready.empty() or self._running:
            return False
        if self._acks is not None and self._acks.held_count:
            return False
        for queue in self.settings.queues:
            # pending counts unacked too: an entry in a consumer's read-ahead
            # buffer, or held by a dead worker, is work still to do.
            if (await self.app.broker.stats(queue)).pending:
                return False
        return True

    # -- running -----------------------------------------------------------

    async def _dispatch(self) -> None:
        while not self._stop.is_set():
            await self._slots.acquire()
            try:
                job = await self._ready.get()
            except BaseException:
                self._slots.release()
                raise
            run = asyncio.create_task(self._run(job), name=f"aioack-run-{job.context.id}")
            self._running.add(run)
            run.add_done_callback(self._run_done)

    def _run_done(self, run: asyncio.Task[None]) -> None:
        self._running.discard(run)
        self._slots.release()
        if not run.cancelled() and run.exception() is not None:
            logger.error("internal error settling a task", exc_info=run.exception())

    async def _run(self, job: Job) -> None:
        held, acks = job.held, self._acks
        assert acks is not None
        if held.lost:  # lost while waiting for a slot: another worker has it now
            await acks.settle(held, NOTHING)
            return
        if job.message.is_expired(time.time()):  # expired while waiting for a slot
            await acks.settle(held, dead_letter("expired", "expired while waiting for a slot"))
            return
        winding_down = self._winding_down.get(job.context.id)
        if winding_down is not None:
            # The broker redelivered a message whose lost run here is still
            # ending (cancelled, in its cleanup): never two runs of it at once.
            await asyncio.wait({winding_down})
        held.started_at = time.monotonic()
        logger.info(
            "task %s attempt %d started (delivery %d%s)",
            held.label,
            job.context.attempt,
            job.context.delivery_count,
            ", redelivered" if job.context.redelivered else "",
        )
        gate = await self._results.before_run(job)
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
        if held.lost:  # lost during the claim or the early ack: never start it
            result = RunResult(Outcome(OutcomeKind.LOST))
        else:
            result = await self._execute(job)
        await self._settle(job, self._results.encode(job, result))

    async def _execute(self, job: Job) -> RunResult:
        """Run the task function; a cancel while it runs becomes an Outcome."""
        held = job.held
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
        error = result.outcome.error
        if error is not None and result.outcome.kind not in _NOT_TASK_FAILURES:
            logger.warning(
                "task %s attempt %d raised %s\n%s",
                held.label,
                job.context.attempt,
                type(error).__name__,
                result.traceback_text or "",
            )
            if self.on_failure is not None:
                self.on_failure(job, error)
        action = decide(
            result.outcome,
            attempt=job.context.attempt,
            options=job.task.options,
            settled=held.settled,
        )
        # Late ack: the result is stored before the settle goes out; a failed
        # store turns the ack into a requeue (never a lost result).
        action = await self._results.after_run(job, result, action)
        retry_body = (
            held.message.next_attempt().encode(self.app.max_message_bytes)
            if action.kind is ActionKind.RETRY
            else None
        )
        await acks.settle(
            held,
            action,
            retry_body=retry_body,
            error=error,
            traceback_text=result.traceback_text,
        )

    def _why_cancelled(self, job: Job) -> OutcomeKind:
        if job.held.lost:
            return OutcomeKind.LOST
        if self._results.claim_lost(job):
            return OutcomeKind.CLAIM_LOST
        return OutcomeKind.SHUTDOWN

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
        # Every step is bounded (a broker that is down must not hold a stop
        # for ever): by the grace deadline, then by CLOSE_ALLOWANCE_S for
        # closing, and not at all once a second stop request forces the stop.
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_timeout
        await self._cancel_and_wait(loops, "the receive and dispatch loops")
        await self._bounded("cancel the consumer", consumer.cancel(), deadline)
        await self._bounded(
            "hand back unstarted deliveries", self._hand_back_unstarted(acks), deadline
        )
        await self._drain_running(deadline)
        await self._cancel_and_wait([heartbeat], "the heartbeat")
        # Closing hands held deliveries back at once (else the broker waits a
        # lease or a connection timeout): it gets its allowance, forced or not.
        now = asyncio.get_running_loop().time()
        close_by = (now if self._force.is_set() else max(deadline, now)) + CLOSE_ALLOWANCE_S
        await self._bounded("close the consumer", consumer.close(), close_by, forceable=False)
        logger.info("worker stopped%s", " (forced)" if self.forced else "")

    async def _bounded(
        self, what: str, step: Awaitable[None], deadline: float, *, forceable: bool = True
    ) -> None:
        """Run one shutdown step until ``deadline`` (loop time) or, if ``forceable``,
        a forced stop.

        A step given up on is cancelled: nothing it held is acked, the broker
        redelivers it.
        """
        task = asyncio.ensure_future(step)
        if not forceable:
            await asyncio.wait(
                {task}, timeout=max(0.0, deadline - asyncio.get_running_loop().time())
            )
        elif not self._force.is_set():
            force = asyncio.ensure_future(self._force.wait())
            timeout_s = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.wait({task, force}, timeout=timeout_s, return_when=FIRST_COMPLETED)
            force.cancel()
        if not task.done():
            logger.warning("shutdown: gave up on the step '%s' (broker unreachable?)", what)
            await self._cancel_and_wait([task], what)
            return
        error = None if task.cancelled() else task.exception()
        if isinstance(error, BrokerError):
            logger.warning("shutdown: could not %s: %s", what, error)
        elif error is not None:
            logger.error("shutdown: %s failed", what, exc_info=error)

    async def _cancel_and_wait(self, tasks: Collection[asyncio.Future[Any]], what: str) -> None:
        """Cancel ``tasks`` and wait for them, but never longer than CLOSE_ALLOWANCE_S."""
        stuck: Collection[asyncio.Future[Any]] = tasks
        # Twice: a run cancelled at its deadline goes on to requeue its
        # delivery; if the broker is down, a second cancel ends that settle
        # (the delivery stays unacked; the broker redelivers it).
        for _ in range(2):
            for task in stuck:
                task.cancel()
            if not stuck:
                return
            _, stuck = await asyncio.wait(stuck, timeout=CLOSE_ALLOWANCE_S / 2)
        if stuck:
            logger.error("shutdown: %s did not end when cancelled; left behind", what)

    async def _hand_back_unstarted(self, acks: AckManager) -> None:
        handed_back = 0
        while not self._ready.empty():
            job = self._ready.get_nowait()
            if not job.held.settled:
                await acks.settle(job.held, RELEASE)
                handed_back += 1
        if handed_back:
            logger.info("handed back %d prefetched, unstarted deliveries", handed_back)

    async def _drain_running(self, deadline: float) -> None:
        """Let running tasks finish until ``deadline``; then cancel and hand them back."""
        pending = set(self._running)
        if pending:
            logger.info(
                "waiting up to %.1fs for %d running tasks",
                self.settings.shutdown_timeout,
                len(pending),
            )
        force = asyncio.ensure_future(self._force.wait())
        while pending and not force.done():
            remaining_s = deadline - asyncio.get_running_loop().time()
            if remaining_s <= 0:
                break
            await asyncio.wait({*pending, force}, timeout=remaining_s, return_when=FIRST_COMPLETED)
            pending = {run for run in pending if not run.done()}
        self.forced = force.done()
        force.cancel()
        if pending:
            logger.warning("cancelling %d tasks still running; they are handed back", len(pending))
            # A run cancelled here requeues its delivery, or leaves it to the
            # broker when that fails (never acked): both bounded.
            await self._cancel_and_wait(pending, f"{len(pending)} cancelled runs")


def _uncancel() -> None:
    """We handle our own cancellation; clear the count so later timeouts work."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


@contextlib.contextmanager
def _signals(worker: Worker, install: bool):  # type: ignore[no-untyped-def]
    """SIGTERM/SIGINT: first stops gracefully, second at once. Only when asked."""
    if not install:
        yield
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, worker, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _on_signal(worker: Worker, sig: signal.Signals) -> None:
    again = worker._stop.is_set()
    logger.warning("%s received: %s", sig.name, "stopping now" if again else "stopping gracefully")
    worker.stop()
