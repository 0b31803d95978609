"""``aioack inspect``: the figures match the broker's state after a known sequence,
on every broker; live workers are listed and age out; bad requests exit clearly."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aioack import App, DeadLetter, QueueLimit
from aioack.brokers import Broker, WorkerRecord
from aioack.cli.inspect import render, snapshot
from tests.conftest import broker_url, make_broker
from tests.support import AMQP_URL, require_service, unique, wait_until

ROOT = Path(__file__).resolve().parents[2]
MANAGEMENT_URL = os.environ.get("AIOACK_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")


def _with_management(broker: Broker, kind: str) -> Broker:
    if kind != "rabbitmq":
        return broker
    require_service(MANAGEMENT_URL.replace("http://", "amqp://"))
    return broker.with_management(MANAGEMENT_URL)  # type: ignore[attr-defined,no-any-return]


async def test_the_figures_match_a_known_sequence_on_every_broker(
    broker: Broker, broker_kind: str, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    observed = _with_management(broker, broker_kind)
    await observed.connect()
    try:
        await broker.declare([queue])
        for n in range(5):
            await broker.publish(queue, b"%d" % n, message_id=f"m{n}")
        await broker.publish(queue, b"later", message_id="later", delay_s=60)
        await broker.add_dead_letter(DeadLetter(queue=queue, reason="failed", body=b"x"))
        consumer = await broker.consume([queue], prefetch=2)
        held = [await consumer.get(5.0), await consumer.get(5.0)]
        assert all(held)

        async def as_expected() -> bool:
            report = await snapshot(observed, [queue])
            return report["queues"][queue] == {"ready": 3, "delayed": 1, "unacked": 2, "dead": 1}

        # The management API's figures trail the broker by a few seconds.
        await wait_until(as_expected, timeout=15 if broker_kind == "rabbitmq" else 5)
        await consumer.close()
    finally:
        if observed is not broker:
            await observed.aclose()


async def test_the_limits_are_shown_with_how_full_the_queue_is(
    broker: Broker, broker_kind: str, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    broker.use_limits({queue: QueueLimit(max_length=3, length_watermark=2)})
    observed = _with_management(broker, broker_kind)
    await observed.connect()
    try:
        await broker.declare([queue])
        await broker.publish(queue, b"1", message_id="m1")
        limit = (await snapshot(observed, [queue]))["limits"][queue]
        assert (limit["max_length"], limit["length_watermark"], limit["when_full"]) == (
            3,
            2,
            "reject",
        )
        assert (limit["length"], limit["length_reached"], limit["length_watermark_reached"]) == (
            1,
            False,
            False,
        )
        await broker.publish(queue, b"2", message_id="m2")
        await broker.publish(queue, b"3", message_id="m3")
        report = await snapshot(observed, [queue])
        limit = report["limits"][queue]
        assert (limit["length"], limit["length_reached"], limit["length_watermark_reached"]) == (
            3,
            True,
            True,
        )
        assert "length 3/3 (reject) FULL" in render(report)
    finally:
        if observed is not broker:
            await observed.aclose()


async def test_a_running_worker_is_listed_and_gone_once_it_stopped(
    broker: Broker, broker_kind: str, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    observed = _with_management(broker, broker_kind)
    await observed.connect()
    app = App(broker=broker)

    @app.task(queue=queue)
    async def noop() -> None:
        return None

    try:
        async with app.worker([queue], concurrency=3) as worker:

            async def listed() -> bool:
                workers = (await snapshot(observed, [queue]))["workers"]
                return any(w["worker_id"] == worker.id for w in workers)

            await wait_until(listed, timeout=15)
            [mine] = [
                w
                for w in (await snapshot(observed, [queue]))["workers"]
                if w["worker_id"] == worker.id
            ]
            assert (mine["queues"], mine["concurrency"], mine["pid"]) == ([queue], 3, os.getpid())

        async def gone() -> bool:
            workers = (await snapshot(observed, [queue]))["workers"]
            return all(w["worker_id"] != worker.id for w in workers)

        await wait_until(gone, timeout=15)
    finally:
        if observed is not broker:
            await observed.aclose()


# Not RabbitMQ: it lists a worker while its AMQP connection lives (the consumers
# carry the record), so a killed worker goes with its connection, not by age.
@pytest.mark.parametrize("kind", ["memory", "redis", "sqlite"])
async def test_a_dead_worker_ages_out(kind: str) -> None:
    broker = make_broker(kind)
    async with broker:
        record = WorkerRecord(unique("w"), "host", 1, ("q",), 1, 0, time.time(), time.time())
        # 1 s: still listed when workers() asks, however busy the machine.
        await broker.announce(record, ttl_s=1.0)
        assert record.worker_id in [w.worker_id for w in await broker.workers() or []]
        await asyncio.sleep(1.1)  # killed: no retire, no new record
        assert record.worker_id not in [w.worker_id for w in await broker.workers() or []]


def _inspect(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOACK_")}
    return subprocess.run(
        [sys.executable, "-m", "aioack", "inspect", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_inspect_json_lists_a_worker_process(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db" if kind == "sqlite" else broker_url(kind)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOACK_")}
    argv = [sys.executable, "-m", "aioack", "worker", "tests.apps.simple:app", "--broker", url]
    worker = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            done = _inspect("tests.apps.simple:app", "--broker", url, "--json")
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            mine = [w for w in report["workers"] if w["pid"] == worker.pid]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert mine and mine[0]["queues"] == ["simple"], report
        assert report["queues"]["simple"]["ready"] == 0
        assert report["unavailable"] == []
    finally:
        worker.terminate()
        worker.wait(20)


def test_bad_requests_exit_with_their_codes(tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path}/q.db"
    unknown = _inspect("--broker", sqlite, "-Q", "no-such-queue")
    assert unknown.returncode == 7 and "unknown queue: no-such-queue" in unknown.stderr
    require_service(AMQP_URL)
    down = _inspect("--broker", AMQP_URL, "--management-url", "http://127.0.0.1:1", "-Q", "x")
    assert (
        down.returncode == 5 and "management API at http://127.0.0.1:1 unreachable" in down.stderr
    )
    assert _inspect("--broker", sqlite, "--watch", "0").returncode == 2
    assert _inspect("--broker", sqlite, "--watch", "-1").returncode == 2
    cannot_list = _inspect("--broker", AMQP_URL)
    assert cannot_list.returncode == 3 and "name them with -Q" in cannot_list.stderr
    not_rabbit = _inspect("--broker", sqlite, "--management-url", "http://127.0.0.1:1")
    assert not_rabbit.returncode == 3 and "RabbitMQ's management API" in not_rabbit.stderr
    text = _inspect("tests.apps.simple:app", "--broker", sqlite)
    assert text.returncode == 0 and text.stdout.splitlines()[2].split() == [
        "queue",
        "ready",
        "delayed",
        "unacked",
        "dead",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "DEBUG", "inspect"],
        ["inspect", "--log-level", "DEBUG"],
        ["--log-level", "ERROR", "inspect", "--log-level", "DEBUG"],  # the later one wins
    ],
    ids=["before", "after", "both"],
)
def test_log_options_work_before_and_after_the_command(argv: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aioack", *argv, "--broker", f"sqlite:///{tmp_path}/q.db"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert " DEBUG " in done.stderr  # asyncio's first line, at DEBUG only
