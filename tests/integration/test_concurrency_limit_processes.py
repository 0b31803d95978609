"""Per-key concurrency limits across real worker processes, and a SIGKILLed holder.

Two ``python -m aioack worker`` processes share a broker and a result
backend; every run appends (key, start, end) of its body to a ledger file.
At no instant may more than the limit of one key's bodies be running. A
worker SIGKILLed while it holds a key's only slot keeps that key full until
the slot's lease runs out, and not for ever.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aioack import App
from aioack.results.redis import RedisResultBackend
from tests.conftest import broker_url, make_broker
from tests.support import REDIS_URL, require_service, start_worker_process, unique, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["redis", "rabbitmq", "sqlite"]
#: Broker options for the worker processes: a killed worker's entries come back soon.
WORKER_OPTIONS = {
    "redis": "?visibility_timeout=1",
    "rabbitmq": "",
    "sqlite": "?visibility_timeout=1",
}


@dataclass
class Setup:
    kind: str
    queue: str
    ledger: Path
    results_url: str
    env: dict[str, str]
    producer: App
    logs: Path

    def worker_url(self) -> str:
        return broker_url(self.kind) + WORKER_OPTIONS[self.kind]

    def runs(self) -> list[tuple[str, float, float, int, int]]:
        if not self.ledger.exists():
            return []
        rows = [line.split() for line in self.ledger.read_text().splitlines()]
        return [(k, float(s), float(e), int(p), int(n)) for k, s, e, p, n in rows]


@pytest.fixture(params=KINDS)
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    kind, queue = str(request.param), unique("slots")
    # SQLite beside SQLite (no server at all); Redis results beside the networked brokers.
    if kind == "sqlite":
        results_url = f"sqlite:///{tmp_path}/results.db"
    else:
        require_service(REDIS_URL)
        results_url = f"{REDIS_URL}?key_prefix={unique('aioack-test')}"
    ledger = tmp_path / "ledger.txt"
    env = {
        **os.environ,
        "AIOACK_TEST_QUEUE": queue,
        "AIOACK_TEST_LEDGER": str(ledger),
        "AIOACK_RESULTS_URL": results_url,
    }
    producer = App(broker=make_broker(kind), results=results_url)
    await producer.connect()
    await producer.broker.declare([queue])
    try:
        yield Setup(kind, queue, ledger, results_url, env, producer, tmp_path)
    finally:
        await producer.broker.delete([queue])
        backend = producer.results
        if isinstance(backend, RedisResultBackend):
            keys = [k async for k in backend.client.scan_iter(f"{backend.prefix}:*")]
            if keys:
                await backend.client.delete(*keys)
        await producer.aclose()


async def start_worker(setup: Setup, env: dict[str, str], name: str) -> asyncio.subprocess.Process:
    log = setup.logs / f"{name}.log"
    process = await start_worker_process(
        "tests.apps.slots:app", setup.worker_url(), env, log, "-c", "4", "--prefetch", "8"
    )
    await wait_until(
        lambda: "worker ready" in log.read_text(errors="replace"),
        timeout=20,
        message=f"{name} ready",
    )
    return process


async def stop_all(workers: list[asyncio.subprocess.Process]) -> None:
    for worker in workers:
        if worker.returncode is None:
            worker.terminate()
    deadline = time.monotonic() + 20
    for worker in workers:
        await asyncio.wait_for(worker.wait(), max(0.1, deadline - time.monotonic()))


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@pytest.mark.parametrize("limit", [1, 2])
async def test_the_limit_holds_across_two_worker_processes(setup: Setup, limit: int) -> None:
    env = {**setup.env, "AIOACK_TEST_LIMIT": str(limit)}
    sync = setup.producer.task(
        name="slots.sync", queue=setup.queue, limit_concurrency=limit, concurrency_key="user"
    )(_stub)
    keys, per_key = ["u1", "u2", "u3"], 10
    workers: list[asyncio.subprocess.Process] = []
    try:
        workers = [await start_worker(setup, env, f"worker-{i}") for i in range(2)]
        for n in range(per_key):
            for key in keys:
                await sync.delay(key, n)
        total = len(keys) * per_key
        await wait_until(lambda: len(setup.runs()) >= total, timeout=60, message="every run")

        async def settled() -> bool:
            return (await setup.producer.broker.stats(setup.queue)).pending == 0

        await wait_until(settled, timeout=20, message="every delivery settled")
    finally:
        await stop_all(workers)
    runs = setup.runs()
    assert Counter((k, n) for k, *_, n in runs) == {(k, n): 1 for k in keys for n in range(per_key)}
    by_key: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, start, end, *_ in runs:
        by_key[key].append((start, end))
    most = {key: most_at_once(intervals) for key, intervals in by_key.items()}
    assert max(most.values()) <= limit, most
    # Both processes ran tasks: the limit was held across them, not inside one.
    assert len({pid for *_, pid, _ in runs}) == 2
    assert await setup.producer.broker.dead_letters(setup.queue) == []


async def test_a_sigkilled_workers_slot_is_freed_after_its_lease(setup: Setup) -> None:
    lease_s = 2.0
    env = {**setup.env, "AIOACK_TEST_LEASE": str(lease_s)}
    hold = setup.producer.task(
        name="slots.hold", queue=setup.queue, limit_concurrency=1, concurrency_key="user"
    )(_stub)
    held = setup.ledger.with_suffix(".held")
    workers: list[asyncio.subprocess.Process] = []
    try:
        first = await start_worker(setup, env, "holder")
        workers.append(first)
        await hold.delay("k", 0)
        await wait_until(held.exists, timeout=20, message="the first run to hold the key")
        held_at = float(held.read_text().split()[0])
        first.send_signal(signal.SIGKILL)
        await first.wait()
        await hold.delay("k", 1)
        workers.append(await start_worker(setup, env, "after"))
        # The key runs again: its dead holder's slot did not stay taken.
        await wait_until(lambda: len(setup.runs()) >= 2, timeout=40, message="the key to run again")
    finally:
        await stop_all(workers)
    starts = sorted(start for _, start, *_ in setup.runs())
    # ...and not before the lease ran out: the limit held while the holder was dead.
    # (The slot was taken a moment before the first body started.)
    assert starts[0] >= held_at + lease_s - 0.2, (held_at, starts)


async def _stub(user: str, n: int) -> None:
    raise AssertionError("runs in the worker processes only")
