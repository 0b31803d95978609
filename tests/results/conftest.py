"""``results_kind`` parametrizes the result tests over every result backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from aioack.results import MemoryResultBackend, ResultBackend
from aioack.results.redis import RedisResultBackend
from aioack.results.sqlite import SQLiteResultBackend
from tests.support import REDIS_URL, require_service, unique

RESULT_KINDS = ["memory", "redis", "sqlite"]

BackendFactory = Callable[..., ResultBackend]


@pytest.fixture(params=RESULT_KINDS)
def results_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_backend(results_kind: str, tmp_path: Path) -> AsyncIterator[BackendFactory]:
    """Backends with a unique key prefix per test (no FLUSHALL); keys deleted afterwards."""
    made: list[ResultBackend] = []

    def make(**options: float) -> ResultBackend:
        if results_kind == "memory":
            backend: ResultBackend = MemoryResultBackend(**options)
        elif results_kind == "sqlite":
            backend = SQLiteResultBackend(f"sqlite:///{tmp_path}/results.db", **options)
        else:
            require_service(REDIS_URL)
            backend = RedisResultBackend(REDIS_URL, key_prefix=unique("aioack-test"), **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        if isinstance(backend, RedisResultBackend):
            keys = [k async for k in backend.client.scan_iter(f"{backend.prefix}:*")]
            if keys:
                await backend.client.delete(*keys)
        await backend.aclose()


@pytest.fixture
def backend(make_backend: BackendFactory) -> ResultBackend:
    return make_backend()
