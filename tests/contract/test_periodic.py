"""Periodic tasks on every broker and result backend, with a clock the test drives.

Two schedulers (separate Apps: their own broker and result connections, as
separate processes would have) wake at the same instant for every tick and
race for it. Counted: publishes of each tick on the broker side (a publish
hook on each scheduler's App) and starts of the task body per tick. The
claim in the result backend is what keeps publishes at one per tick; the
deterministic task id with effect-once is what keeps body starts at one
even when a frozen scheduler publishes a tick late, a second time.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from aioack import App, TaskContext
from aioack.brokers import Broker
from aioack.hooks import PublishEvent, SettledEvent
from aioack.message import Message
from aioack.periodic import MAX_CATCH_UP_TICKS, Schedule, Scheduler
from aioack.results import ResultBackend
from tests.conftest import make_broker, same_store
from tests.support import wait_until

pytestmark = pytest.mark.contract

#: A whole hour in Unix time: ticks of every=1 and of hourly crons fall on it.
T0 = 1_800_000_000.0 - 1_800_000_000.0 % 3600


class FakeTime:
    """A clock the test moves. ``sleep`` parks until the clock passes its end."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.parked = 0
        self._moved = asyncio.Condition()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        end = self.now + seconds
        async with self._moved:
            self.parked += 1
            try:
                await self._moved.wait_for(lambda: self.now >= end)
            finally:
                self.parked -= 1

    async def advance(self, seconds: float) -> None:
        async with self._moved:
            self.now += seconds
            self._moved.notify_all()


class Published:
    """A publish hook: how many times each task id was published."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def on_publish(self, event: PublishEvent) -> None:
        self.counts[event.task_id] += 1


class Settled:
    """A worker hook: deliveries acked (run, or found completed already)."""

    def __init__(self) -> None:
        self.count = 0

    def on_settled(self, event: SettledEvent) -> None:
        self.count += event.action == "ack"


@pytest.fixture
async def apps(
    broker_kind: str, broker: Broker, results: ResultBackend
) -> AsyncIterator[Callable[[], App]]:
    """Apps on the same broker and result store, each with connections of its own."""
    made: list[App] = []

    def make() -> App:
        if broker_kind == "memory":
            return App(broker=broker, results=results)
        app = App(broker=make_broker(broker_kind), results=same_store(results))
        made.append(app)
        return app

    yield make
    await asyncio.gather(*(app.aclose() for app in made))


def _declare(app: App, queue: str, starts: Counter[str], **schedule: object) -> None:
    @app.task(name="periodic.beat", queue=queue)
    async def beat(ctx: TaskContext) -> None:
        starts[ctx.id] += 1

    app.periodic(beat, name="beat", **schedule)  # type: ignore[arg-type]


async def test_two_schedulers_fire_each_tick_once(
    apps: Callable[[], App], broker: Broker, new_queue: Callable[[], str]
) -> None:
    queue, ticks = new_queue(), 30
    starts: Counter[str] = Counter()
    published = Published()
    time = FakeTime(T0 + 0.5)
    schedulers: list[Scheduler] = []
    for _ in range(2):
        app = apps()
        app.add_hook(published)
        _declare(app, queue, starts, every=1, missed="all")
        schedulers.append(app.scheduler(lease=5, clock=time.clock, sleep=time.sleep))
    worker_app = apps()
    _declare(worker_app, queue, starts, every=1)
    settled = Settled()
    worker = worker_app.worker([queue], concurrency=4, hooks=[settled])
    async with asyncio.TaskGroup() as group:
        running = [group.create_task(s.run()) for s in schedulers]
        work = group.create_task(worker.run())
        for _ in range(ticks):
            # Both parked: both saw the clock where it is; now both wake for the next tick.
            await wait_until(lambda: time.parked == 2, 20, message="both schedulers asleep")
            await time.advance(1.0)
        await wait_until(lambda: time.parked == 2, 20, message="the last tick claimed")
        expected = {f"periodic:beat:{round((T0 + k) * 1000)}" for k in range(1, ticks + 1)}
        await wait_until(lambda: set(starts) >= expected, 60, message="every tick run")
        await wait_until(lambda: settled.count == ticks, 20, message="every delivery settled")
        for task in running:
            task.cancel()
        worker.stop()
        await work
    assert set(published.counts) == expected
    assert Counter(published.counts.values()) == {1: ticks}, "a tick was published twice"
    assert Counter(starts.values()) == {1: ticks}, "a tick ran twice"
    assert sum(s.fired for s in schedulers) == ticks
    state = (await schedulers[0]._backend().schedule_states(["beat"]))["beat"]
    assert state.last_fire == T0 + ticks
    assert state.next_fire == T0 + ticks + 1


async def test_a_scheduler_frozen_after_its_claim_is_taken_over_within_a_lease(
    apps: Callable[[], App], broker: Broker, new_queue: Callable[[], str]
) -> None:
    """A claims the tick and freezes before its publish lands (as a process that
    died there would). B fires the tick once A's claim lapses; when A wakes and
    publishes late, the tick is published twice but still runs once."""
    queue, lease_s = new_queue(), 1.0
    starts: Counter[str] = Counter()
    published = Published()
    time = FakeTime(T0 + 0.2)  # 0.2 s after a tick of every=3600; the clock stays there
    frozen_app, taker_app, worker_app = apps(), apps(), apps()
    for app in (frozen_app, taker_app, worker_app):
        app.add_hook(published)
        _declare(app, queue, starts, every=3600)
    thaw, claimed = asyncio.Event(), asyncio.Event()
    real_publish = frozen_app.publish

    async def frozen_publish(message: Message, queue: str, *, delay_s: float = 0.0) -> None:
        claimed.set()
        await thaw.wait()
        await real_publish(message, queue, delay_s=delay_s)

    frozen_app.publish = frozen_publish  # type: ignore[method-assign]
    frozen = frozen_app.scheduler(lease=lease_s, clock=time.clock, sleep=time.sleep)
    taker = taker_app.scheduler(lease=lease_s, clock=time.clock, sleep=time.sleep)
    for s in (frozen, taker):
        s.started_at = T0 - 1  # both were up before the tick
    tick_id = f"periodic:beat:{round(T0 * 1000)}"
    settled = Settled()
    worker = worker_app.worker([queue], concurrency=2, hooks=[settled])
    async with asyncio.TaskGroup() as group:
        work = group.create_task(worker.run())
        stuck = group.create_task(frozen.run_once())
        await asyncio.wait_for(claimed.wait(), 20)
        assert await taker.run_once() and taker.fired == 0, "B fired a tick A holds"

        # B looks again until A's claim lapses (real time: the backend's TTL).
        async def taken_over() -> bool:
            await taker.run_once()
            return taker.fired == 1

        await wait_until(taken_over, 30, interval=0.1, message="B fires the tick")
        await wait_until(lambda: starts[tick_id] == 1, 30, message="the tick's run")
        thaw.set()  # A wakes: its publish lands now, a duplicate
        await asyncio.wait_for(stuck, 20)
        await wait_until(lambda: published.counts[tick_id] == 2, 20, message="A's late publish")
        await wait_until(lambda: settled.count == 2, 30, message="both deliveries settled")
        worker.stop()
        await work
    assert frozen.fired == 1 and taker.fired == 1
    assert starts == {tick_id: 1}, "the duplicate publish ran the tick again"


@pytest.mark.parametrize(
    ("missed", "fired"),
    [("skip", 0), ("once", 1), ("all", 3)],
)
async def test_missed_ticks_follow_the_schedule_policy(
    apps: Callable[[], App], new_queue: Callable[[], str], missed: str, fired: int
) -> None:
    """Hourly; last fired at T0; no scheduler until T0 + 3h20m: the 1h, 2h and 3h
    ticks were missed. skip: none (the next is 4h); once: the 3h one; all: each."""
    queue = new_queue()
    published = Published()
    app = apps()
    app.add_hook(published)
    _declare(app, queue, Counter(), cron="0 * * * *", missed=missed)
    await app.require_results().record_schedule("beat", fired=T0, next_fire=T0 + 3600)
    time = FakeTime(T0 + 3 * 3600 + 1200)
    scheduler = app.scheduler(clock=time.clock, sleep=time.sleep)
    await scheduler.run_once()
    hours = {"skip": [], "once": [3], "all": [1, 2, 3]}[missed]
    assert dict(published.counts) == {
        f"periodic:beat:{round((T0 + h * 3600) * 1000)}": 1 for h in hours
    }
    assert scheduler.fired == fired
    state = (await app.require_results().schedule_states(["beat"]))["beat"]
    assert state.last_fire == (T0 + 3 * 3600 if hours else T0)
    assert state.next_fire == T0 + 4 * 3600


async def test_catching_up_all_missed_ticks_is_bounded(
    apps: Callable[[], App], new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    published = Published()
    app = apps()
    app.add_hook(published)
    _declare(app, queue, Counter(), every=60, missed="all")
    await app.require_results().record_schedule("beat", fired=T0, next_fire=None)
    time = FakeTime(T0 + 1000 * 60 + 30)  # a thousand ticks missed
    scheduler = app.scheduler(clock=time.clock, sleep=time.sleep)
    await scheduler.run_once()
    newest = [round((T0 + k * 60) * 1000) for k in range(901, 1001)]
    assert scheduler.fired == MAX_CATCH_UP_TICKS
    assert set(published.counts) == {f"periodic:beat:{ms}" for ms in newest}


async def test_a_last_fire_from_a_clock_ahead_does_not_stall_the_schedule(
    apps: Callable[[], App], new_queue: Callable[[], str]
) -> None:
    """A scheduler a day ahead fires a tick from the others' future; the correct
    scheduler still publishes each tick of the next ten minutes, and its record
    replaces the last fire from the future."""
    queue = new_queue()
    published = Published()
    skewed_app, good_app = apps(), apps()
    for app in (skewed_app, good_app):
        app.add_hook(published)
        _declare(app, queue, Counter(), every=60)
    ahead = FakeTime(T0 + 86_400 + 30)
    skewed = skewed_app.scheduler(clock=ahead.clock, sleep=ahead.sleep)
    skewed.started_at = T0 + 86_400 - 1
    await skewed.run_once()
    assert skewed.fired == 1, "the skewed scheduler fired its (future) tick"
    time = FakeTime(T0 + 30)
    good = good_app.scheduler(clock=time.clock, sleep=time.sleep)
    await good.run_once()
    for _ in range(10):
        await time.advance(60)
        await good.run_once()
    expected = {f"periodic:beat:{round((T0 + k * 60) * 1000)}" for k in range(1, 11)}
    future = f"periodic:beat:{round((T0 + 86_400) * 1000)}"
    assert dict(published.counts) == {future: 1} | dict.fromkeys(expected, 1)
    assert good.fired == 10
    state = (await good._backend().schedule_states(["beat"]))["beat"]
    assert state.last_fire == T0 + 600


@pytest.mark.parametrize("every", [0.1, 0.2, 1.1])
async def test_sub_second_and_fractional_intervals_fire_every_tick(
    apps: Callable[[], App], new_queue: Callable[[], str], every: float
) -> None:
    """Ticks such as 1700000000.1000001 are stored and compared in whole ms: a fired
    tick is never due again (Lua's cjson once rounded it below itself)."""
    queue = new_queue()
    published = Published()
    app = apps()
    app.add_hook(published)
    _declare(app, queue, Counter(), every=every, missed="all")
    start = 1_700_000_000.05
    time = FakeTime(start)
    scheduler = app.scheduler(lease=30, clock=time.clock, sleep=time.sleep)
    scheduler.started_at = start
    for _ in range(20):
        await time.advance(every)
        await scheduler.run_once()
    first = math.floor(start / every) + 1
    expected = {
        Schedule("beat", "t", "q", every_s=every).tick_id(k * every)
        for k in range(first, first + 20)
    }
    assert scheduler.fired == 20
    assert dict(published.counts) == dict.fromkeys(expected, 1)
