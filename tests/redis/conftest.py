"""Fixtures for Redis-only tests: brokers with short leases, a raw client, own servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from aioack.brokers.redis import RedisBroker
from tests.proxy import TcpProxy
from tests.redis.servers import OwnRedis
from tests.support import REDIS_URL, require_service, unique

#: Short enough that reclaim tests take about a second; long against local round trips.
FAST = {"visibility_timeout": 0.5, "poll_interval": 0.05}


@pytest.fixture
def redis_url() -> str:
    require_service(REDIS_URL)
    return REDIS_URL


@pytest.fixture
async def make_broker(redis_url: str) -> AsyncIterator[Callable[..., RedisBroker]]:
    """Builds connected-on-demand brokers (fast timings unless overridden); closes them all."""
    made: list[RedisBroker] = []

    def make(url: str | None = None, **options: object) -> RedisBroker:
        made.append(RedisBroker.from_url(url or redis_url, **{**FAST, **options}))
        return made[-1]

    yield make
    for broker in made:
        await broker.aclose()


@pytest.fixture
async def broker(make_broker: Callable[..., RedisBroker]) -> RedisBroker:
    b = make_broker()
    await b.connect()
    return b


@pytest.fixture
async def queue(broker: RedisBroker) -> AsyncIterator[str]:
    name = unique("rq")
    await broker.declare([name])
    yield name
    await broker.delete([name])


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def delay_proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    """A proxy to the shared Redis that holds every chunk 5 ms each way."""
    proxy = await TcpProxy(redis_url, delay_s=0.005).start()
    yield proxy
    await proxy.aclose()
