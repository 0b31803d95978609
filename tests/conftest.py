"""Fixtures. ``broker_kind`` parametrizes the contract suite over every broker."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from aioack.brokers import Broker, broker_from_url
from aioack.results import MemoryResultBackend, ResultBackend
from aioack.results.redis import RedisResultBackend
from aioack.results.sqlite import SQLiteResultBackend
from tests.proxy import TcpProxy
from tests.support import AMQP_URL, REDIS_URL, require_service, unique

#: The contract suites' SQLite files, one directory per test process (no file in
#: the repository; pytest-xdist's processes each have their own).
_SQLITE_DIR = tempfile.mkdtemp(prefix="aioack-tests-")
# An App that names no broker uses AIOACK_BROKER_URL, else aioack.db in the
# current directory: in tests (and the worker processes they start) a
# temporary file, never one in the repository. Tests of the default unset it.
# A URL set by the environment is kept; one set here by pytest-xdist's main
# process is inherited by its test processes, and replaced: one file each.
_OUR_DEFAULT = "AIOACK_TESTS_DEFAULT_BROKER_URL"
if os.environ.get("AIOACK_BROKER_URL") in (None, os.environ.get(_OUR_DEFAULT)):
    os.environ["AIOACK_BROKER_URL"] = os.environ[_OUR_DEFAULT] = (
        f"sqlite:///{_SQLITE_DIR}/default.db"
    )


@dataclass(frozen=True)
class BrokerUnderTest:
    #: The broker URL of its test server.
    url: str
    #: Options that make its timings fit a test run (short leases, fast polls).
    options: dict[str, object] = field(default_factory=dict)
    in_process: bool = False


#: Each broker joins the contract suites with one entry here.
BROKERS: dict[str, BrokerUnderTest] = {
    "memory": BrokerUnderTest("memory://", in_process=True),
    "rabbitmq": BrokerUnderTest(
        AMQP_URL, {"reconnect_interval_s": 0.2, "lease_check_interval_s": 0.2}
    ),
    "redis": BrokerUnderTest(REDIS_URL, {"visibility_timeout": 2.0, "poll_interval": 0.05}),
    "sqlite": BrokerUnderTest(
        f"sqlite:///{_SQLITE_DIR}/contract.db", {"visibility_timeout": 2.0}, in_process=True
    ),
}
BROKER_KINDS = list(BROKERS)
TEST_BROKER_OPTIONS = {kind: spec.options for kind, spec in BROKERS.items()}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pytest-xdist process, skip the ``serial`` tests: they measure time or
    memory, and tests running beside them would skew it (a second's stall of a
    busy machine is no bug). ``-n 0`` runs them: ``.ci/run`` does, after the rest."""
    if not hasattr(config, "workerinput"):  # one process: nothing runs beside them
        return
    alone = pytest.mark.skip(reason="serial: measures time or memory; run with -m serial -n 0")
    for item in items:
        if item.get_closest_marker("serial"):
            item.add_marker(alone)


def broker_url(kind: str) -> str:
    spec = BROKERS[kind]
    if not spec.in_process:
        require_service(spec.url)
    return spec.url


def make_broker(kind: str, **options: object) -> Broker:
    return broker_from_url(broker_url(kind), **{**BROKERS[kind].options, **options})


@pytest.fixture(params=BROKER_KINDS)
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def broker(broker_kind: str) -> AsyncIterator[Broker]:
    b = make_broker(broker_kind)
    await b.connect()
    try:
        yield b
    finally:
        await b.aclose()


@pytest.fixture
async def new_queue(broker: Broker) -> AsyncIterator[Callable[[], str]]:
    """Unique queue names isolate tests (no FLUSHALL); they are deleted afterwards."""
    created: list[str] = []

    def make() -> str:
        created.append(unique("q"))
        return created[-1]

    yield make
    if created:
        await broker.delete(created)


@pytest.fixture
async def results(broker_kind: str) -> AsyncIterator[ResultBackend]:
    """A result backend to go with ``broker``: Redis (unique key prefix) beside a
    networked broker, so several worker processes share it; memory beside
    memory; SQLite beside SQLite."""
    if broker_kind == "memory":
        yield MemoryResultBackend()
        return
    if broker_kind == "sqlite":  # no server at all
        backend = SQLiteResultBackend(f"sqlite:///{tempfile.mkdtemp(dir=_SQLITE_DIR)}/results.db")
        yield backend
        await backend.aclose()
        return
    require_service(REDIS_URL)
    backend = RedisResultBackend(REDIS_URL, key_prefix=unique("aioack-test"))
    try:
        yield backend
    finally:
        keys = [k async for k in backend.client.scan_iter(f"{backend.prefix}:*")]
        if keys:
            await backend.client.delete(*keys)
        await backend.aclose()


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of Redis, to cut connections (``refuse``) and let them back."""
    require_service(REDIS_URL)
    proxy = await TcpProxy(REDIS_URL).start()
    yield proxy
    await proxy.aclose()


def same_store(results: ResultBackend) -> ResultBackend:
    """Another client of the store ``results`` uses: its own connection (and thread)."""
    if isinstance(results, RedisResultBackend):
        return RedisResultBackend(results.location, key_prefix=results.prefix)
    if isinstance(results, SQLiteResultBackend):
        return SQLiteResultBackend(results.location)
    return results  # memory: one process, one store
