"""A rate limit across two real worker processes (``python -m aioack worker``).

200 runs of a task limited to 20/s are published at once; two worker
processes share the broker and the result backend, and every run appends
its start time to a ledger file. After a second of warm-up, no one-second
window of the next five holds more than 22 starts, and the five hold 20 a
second within 10 %.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from aioack import App
from aioack.results.redis import RedisResultBackend
from tests.conftest import broker_url, make_broker
from tests.support import REDIS_URL, require_service, start_worker_process, unique, wait_until

# Serial: measures start rates, with a floor a busy machine would break.
pytestmark = [pytest.mark.integration, pytest.mark.serial]

RATE, RUNS = 20, 200
WARM_UP_S, WINDOWS = 1.0, 5


async def _stub(n: int) -> None:
    raise AssertionError("runs in the worker processes only")


@pytest.mark.parametrize("kind", ["redis", "sqlite", "rabbitmq"])
async def test_twenty_a_second_holds_within_ten_percent_across_two_worker_processes(
    kind: str, tmp_path: Path
) -> None:
    queue, ledger = unique("rated"), tmp_path / "ledger.txt"
    # SQLite beside SQLite (no server at all); Redis results beside the networked brokers.
    if kind == "sqlite":
        results_url = f"sqlite:///{tmp_path}/results.db"
    else:
        require_service(REDIS_URL)
        results_url = f"{REDIS_URL}?key_prefix={unique('aioack-test')}"
    env = {
        **os.environ,
        "AIOACK_TEST_QUEUE": queue,
        "AIOACK_TEST_LEDGER": str(ledger),
        "AIOACK_RESULTS_URL": results_url,
        "AIOACK_TEST_RATE": f"{RATE}/s",
    }
    producer = App(broker=make_broker(kind), results=results_url)
    ping = producer.task(name="rated.ping", queue=queue, rate_limit=f"{RATE}/s")(_stub)
    await producer.connect()
    await producer.broker.declare([queue])
    workers: list[asyncio.subprocess.Process] = []
    try:
        for n in range(RUNS):
            await ping.delay(n)
        for i in range(2):
            log = tmp_path / f"worker-{i}.log"
            workers.append(
                await start_worker_process(
                    "tests.apps.rated:app", broker_url(kind), env, log, "-c", "4"
                )
            )
        needed = WARM_UP_S + WINDOWS + 1
        await wait_until(
            lambda: _span(ledger) >= needed, timeout=60, interval=0.2, message="7 s of runs"
        )
    finally:
        for worker in workers:
            worker.terminate()
        deadline = time.monotonic() + 30
        for worker in workers:
            await asyncio.wait_for(worker.wait(), max(0.1, deadline - time.monotonic()))
        await producer.broker.delete([queue])
        backend = producer.results
        if isinstance(backend, RedisResultBackend):
            keys = [k async for k in backend.client.scan_iter(f"{backend.prefix}:*")]
            if keys:
                await backend.client.delete(*keys)
        await producer.aclose()
    rows = [line.split() for line in ledger.read_text().splitlines()]
    starts = sorted(float(start) for start, _, _ in rows)
    ran = Counter(int(n) for *_, n in rows)
    assert max(ran.values()) == 1, "a run started twice"
    assert len({pid for _, pid, _ in rows}) == 2, "both processes ran tasks"
    begin = starts[0] + WARM_UP_S
    counts = [sum(begin + w <= s < begin + w + 1 for s in starts) for w in range(WINDOWS)]
    # The limit holds: no second over 22 starts. And it is the rate, not a
    # throttle below it: 20 a second over the five within 10 %. (A single second
    # may fall a little short on a busy machine: a delivery back late.)
    assert max(counts) <= RATE * 1.1, counts
    # Over the whole run, the first second included (a burst at start-up is the
    # likeliest way to break a limit): no one-second window, wherever it starts,
    # holds a burst. The bound is looser than the aligned windows': body start
    # times jitter after their token on a loaded machine (23 seen once), and a
    # burst would be dozens.
    sliding = max(sum(s <= t < s + 1 for t in starts) for s in starts)
    assert sliding <= RATE * 1.25, f"{sliding} starts within one second"
    assert RATE * 0.9 <= sum(counts) / WINDOWS <= RATE * 1.1, counts


def _span(ledger: Path) -> float:
    if not ledger.exists():
        return 0.0
    starts = [float(line.split()[0]) for line in ledger.read_text().splitlines()]
    return max(starts) - min(starts) if starts else 0.0
