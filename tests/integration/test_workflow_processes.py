"""A chain survives a SIGKILLed worker: real ``python -m aioack worker`` processes.

The chain first(1) -> middle -> last runs in a worker process; middle hangs
on its first start, and the test SIGKILLs that worker there. A second worker
gets the middle step back from the broker (RabbitMQ when the connection
closes, Redis and SQLite when the visibility timeout ends), runs it again
with the result first had passed on, and publishes last: the chain's result
arrives, and each step's start is counted from a ledger the steps write.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from aioack import App, chain
from aioack.results.redis import RedisResultBackend
from tests.conftest import broker_url, make_broker
from tests.support import (
    REDIS_URL,
    require_service,
    start_worker_process,
    stop_worker_process,
    unique,
    wait_until,
)

pytestmark = pytest.mark.integration

#: Broker options for the worker processes: a killed worker's entries come back soon.
WORKER_OPTIONS = {
    "redis": "?visibility_timeout=1",
    "rabbitmq": "",
    "sqlite": "?visibility_timeout=1",
}


async def _first(x: int) -> int: ...  # the producer's copies: names and signatures only
async def _middle(x: int) -> int: ...
async def _last(x: int) -> int: ...


@pytest.mark.parametrize("kind", ["redis", "rabbitmq", "sqlite"])
async def test_a_chain_completes_after_its_middle_worker_is_sigkilled(
    kind: str, tmp_path: Path
) -> None:
    queue, ledger = unique("chain"), tmp_path / "ledger.txt"
    if kind == "sqlite":  # no server at all
        results_url = f"sqlite:///{tmp_path}/results.db"
    else:
        require_service(REDIS_URL)
        results_url = f"{REDIS_URL}?key_prefix={unique('aioack-test')}"
    env = {
        **os.environ,
        "AIOACK_TEST_QUEUE": queue,
        "AIOACK_TEST_LEDGER": str(ledger),
        "AIOACK_RESULTS_URL": results_url,
    }
    producer = App(broker=make_broker(kind), results=results_url)
    first = producer.task(name="workflows.first", queue=queue)(_first)
    middle = producer.task(name="workflows.middle", queue=queue)(_middle)
    last = producer.task(name="workflows.last", queue=queue)(_last)
    worker_url = broker_url(kind) + WORKER_OPTIONS[kind]

    def starts() -> list[str]:
        return ledger.read_text().splitlines() if ledger.exists() else []

    workers = []
    try:
        workers.append(
            await start_worker_process(
                "tests.apps.workflows:app", worker_url, env, tmp_path / "a.log"
            )
        )
        result = await chain(first.s(1), middle.s(), last.s()).apply_async()
        await wait_until(lambda: "middle 2" in starts(), timeout=60, message="middle started")
        workers[0].send_signal(signal.SIGKILL)
        await workers[0].wait()

        workers.append(
            await start_worker_process(
                "tests.apps.workflows:app", worker_url, env, tmp_path / "b.log"
            )
        )
        assert await result.get(timeout=90) == (1 + 1) * 10 + 5
        # middle ran again with first's result; first was acked before the kill.
        assert starts() == ["first 1", "middle 2", "middle 2", "last 20"]
    finally:
        for worker in workers:
            await stop_worker_process(worker)
        await producer.broker.delete([queue])
        backend = producer.results
        if isinstance(backend, RedisResultBackend):
            keys = [k async for k in backend.client.scan_iter(f"{backend.prefix}:*")]
            if keys:
                await backend.client.delete(*keys)
        await producer.aclose()
