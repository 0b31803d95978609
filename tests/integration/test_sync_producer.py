"""Sync callers (issue 16): a script, threads, a second ``asyncio.run()``.

Each test counts what the guarantee is about: the task bodies that ran in a
real worker (on Redis and on SQLite), one per publish, none lost, none twice.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from aioack import App, BlockingCallInEventLoop, ConfigurationError, Task
from aioack.brokers import MemoryBroker
from tests.support import REDIS_URL, require_service, unique

QUEUE = "sync16"


@pytest.fixture(params=["redis", "sqlite"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A broker URL and a results URL, unique to the test (a key prefix, or files)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/queue.db", f"sqlite:///{tmp_path}/results.db"
        return
    require_service(REDIS_URL)
    prefix = unique("aioack-sync")
    yield f"{REDIS_URL}?key_prefix={prefix}", f"{REDIS_URL}?key_prefix={prefix}-r"
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def make_app(urls: tuple[str, str]) -> tuple[App, Task[[int, int], int], list[tuple[int, int]]]:
    app = App(urls[0], results=urls[1])
    runs: list[tuple[int, int]] = []

    @app.task(name="sync16.add", queue=QUEUE)
    async def add(x: int, y: int) -> int:
        runs.append((x, y))  # one entry per body run
        return x + y

    return app, add, runs


@contextmanager
def running_worker(urls: tuple[str, str]) -> Iterator[list[tuple[int, int]]]:
    """A real worker on its own App and event loop, in a thread; yields its body runs."""
    app, _, runs = make_app(urls)
    worker = app.worker(concurrency=8)
    started = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        started.set()
        await worker.run()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield runs
    finally:
        loops[0].call_soon_threadsafe(worker.stop)
        thread.join(30)
        assert not thread.is_alive()


def test_a_second_asyncio_run_publishes_and_reads_again(urls: tuple[str, str]) -> None:
    # The issue: the second asyncio.run(add.delay(...)) raised "Event loop is closed".
    with running_worker(urls) as runs:
        app, add, _ = make_app(urls)
        first = asyncio.run(add.delay(2, 2))
        second = asyncio.run(add.delay(3, 3))
        assert asyncio.run(first.get(timeout=30)) == 4
        assert asyncio.run(second.get(timeout=30)) == 6
        asyncio.run(app.aclose())
    assert sorted(runs) == [(2, 2), (3, 3)]


def test_a_sync_caller_enqueues_twice_and_reads_both_results(urls: tuple[str, str]) -> None:
    with running_worker(urls) as runs:
        app, add, _ = make_app(urls)
        first, second = add.delay_sync(2, 2), add.delay_sync(40, 2)
        assert (first.get_sync(timeout=30), second.get_sync(timeout=30)) == (4, 42)
        assert first.state_sync().value == "SUCCESS"
        app.close_sync()
    assert sorted(runs) == [(2, 2), (40, 2)]


def test_eight_threads_enqueue_and_wait_at_once_through_one_loop_thread(
    urls: tuple[str, str],
) -> None:
    with running_worker(urls) as runs:
        app, add, _ = make_app(urls)
        together = threading.Barrier(8)
        loop_threads: set[int] = set()

        def caller(n: int) -> list[int]:
            together.wait(10)
            handles = [add.delay_sync(n, i) for i in range(5)]
            loop_threads.update(
                t.ident or 0 for t in threading.enumerate() if t.name == "aioack-sync"
            )
            return [handle.get_sync(timeout=30) for handle in handles]

        with ThreadPoolExecutor(8) as pool:
            sums = list(pool.map(caller, range(8)))
        app.close_sync()
    assert sums == [[n + i for i in range(5)] for n in range(8)]
    assert sorted(runs) == sorted((n, i) for n in range(8) for i in range(5))
    assert len(loop_threads) == 1, "one sync loop thread per App"
    assert not [t for t in threading.enumerate() if t.name == "aioack-sync"], "closed"


async def test_a_sync_call_inside_an_event_loop_fails_at_once(tmp_path: Path) -> None:
    app, add, _ = make_app((f"sqlite:///{tmp_path}/q.db", f"sqlite:///{tmp_path}/r.db"))
    with pytest.raises(BlockingCallInEventLoop, match=r"await the async call"):
        add.delay_sync(1, 1)
    with pytest.raises(BlockingCallInEventLoop):
        app.result("some-id", add).get_sync(timeout=1)
    assert app._sync is None, "nothing was started"


def test_a_sync_call_from_the_sync_loop_itself_is_refused_not_deadlocked(tmp_path: Path) -> None:
    app, add, _ = make_app((f"sqlite:///{tmp_path}/q.db", f"sqlite:///{tmp_path}/r.db"))
    seen: list[BaseException] = []

    class Nested:
        def on_publish(self, event: Any) -> None:
            try:
                add.delay_sync(0, 0)  # runs on the sync loop: would wait for itself
            except BlockingCallInEventLoop as exc:
                seen.append(exc)

    app.add_hook(Nested())
    add.delay_sync(1, 1)
    app.close_sync()
    assert len(seen) == 1


def test_the_async_api_refuses_a_second_loop_while_the_first_still_runs(tmp_path: Path) -> None:
    app, add, _ = make_app((f"sqlite:///{tmp_path}/q.db", f"sqlite:///{tmp_path}/r.db"))
    connected, done = threading.Event(), threading.Event()

    async def hold() -> None:
        await app.connect()
        connected.set()
        await asyncio.to_thread(done.wait, 10)
        await app.aclose()

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    try:
        assert connected.wait(10)
        with pytest.raises(ConfigurationError, match=r"runs in another thread.*_sync"):
            asyncio.run(add.delay(1, 1))
    finally:
        done.set()
        thread.join(10)


@pytest.mark.parametrize("given", ["instance", "memory"])
def test_the_sync_api_refuses_a_broker_it_cannot_open_twice(given: str, tmp_path: Path) -> None:
    broker = MemoryBroker() if given == "instance" else "memory://"
    app = App(broker)

    @app.task
    async def noop() -> None: ...

    with pytest.raises(ConfigurationError, match=r"memory://|instance"):
        noop.delay_sync()


def test_delay_not_awaited_warns_at_the_line_that_called_it(tmp_path: Path) -> None:
    _, add, _ = make_app((f"sqlite:///{tmp_path}/q.db", f"sqlite:///{tmp_path}/r.db"))
    gc.collect()  # earlier tests' garbage warns (unclosed sockets) now, not below
    with pytest.warns(RuntimeWarning, match=r"add\.delay\(\.\.\.\) was never awaited") as seen:
        line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        add.delay(1, 2)  # type: ignore[unused-coroutine]
        gc.collect()
    ours = [w for w in seen if "never awaited" in str(w.message)]
    assert [(w.filename, w.lineno) for w in ours] == [(__file__, line)]


def test_an_awaited_or_scheduled_delay_does_not_warn(tmp_path: Path) -> None:
    app, add, _ = make_app((f"sqlite:///{tmp_path}/q.db", f"sqlite:///{tmp_path}/r.db"))

    async def main() -> None:
        await add.delay(1, 2)
        await asyncio.create_task(add.delay(3, 4))  # a real Coroutine: tasks take it
        await asyncio.gather(add.apply_async((5, 6)))
        await app.aclose()

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())
        gc.collect()


def test_a_test_client_without_with_serves_requests_on_new_loops(urls: tuple[str, str]) -> None:
    # Starlette's TestClient without `with` runs each request on a new event loop.
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    _, add, _ = make_app(urls)
    api = FastAPI()

    @api.post("/add")
    async def enqueue() -> dict[str, str]:
        handle = await add.delay(1, 2)
        return {"id": handle.id, "state": (await handle.state()).value}

    client = TestClient(api)
    first, second = client.post("/add"), client.post("/add")
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["id"] != second.json()["id"]


_FORK_THEN_SYNC = """
import os, signal, sys
from aioack import App
app = App(sys.argv[1])
@app.task(queue="forked")
def add(x: int, y: int) -> int:
    return x + y
add.delay_sync(1, 2)  # the parent starts its sync loop thread
pid = os.fork()
if pid == 0:
    signal.alarm(20)  # a hang kills the child
    add.delay_sync(3, 4)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", "hung" if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
"""


def test_a_forked_child_of_a_sync_caller_publishes_instead_of_hanging(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fork.db"
    done = subprocess.run(
        [sys.executable, "-c", _FORK_THEN_SYNC, url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "child 0", done.stdout + done.stderr


def test_at_exit_the_sync_api_closes_its_sqlite_files_without_a_warning(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom aioack import App\n"
        "app = App(sys.argv[1], results=sys.argv[2])\n"
        "@app.task(queue='exit')\ndef add(x: int, y: int) -> int:\n    return x + y\n"
        "add.delay_sync(1, 2)\n"
    )
    broker, results = tmp_path / "b.db", tmp_path / "r.db"
    done = subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{broker}", f"sqlite:///{results}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "failed" not in done.stderr, done.stderr
    # Closed: each file checkpointed and its -wal / -shm removed.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.db", "r.db"]
