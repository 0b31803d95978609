"""Effect blocks (``ctx.effect()``): writes that commit at most once per key, on Redis.

Every check counts how often the block's writes reached Redis (INCR), so a
block that commits twice fails it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aioack import App, ConfigurationError, Retry, TaskContext
from aioack.brokers import MemoryBroker
from aioack.results import MemoryResultBackend
from aioack.results.redis import RedisResultBackend
from aioack.testing import run_until_idle
from tests.support import REDIS_URL, require_service, unique


@pytest.fixture
async def backend() -> AsyncIterator[RedisResultBackend]:
    require_service(REDIS_URL)
    backend = RedisResultBackend(REDIS_URL, key_prefix=unique("aioack-test"))
    yield backend
    keys = [k async for k in backend.client.scan_iter(f"{backend.prefix}:*")]
    if keys:
        await backend.client.delete(*keys)
    await backend.aclose()


async def count(backend: RedisResultBackend, name: str) -> int:
    return int(await backend.client.get(name) or 0)


async def test_a_block_commits_once_and_later_blocks_of_the_key_drop_their_writes(
    backend: RedisResultBackend,
) -> None:
    counter = f"{backend.prefix}:counter"
    async with backend.effect("k1", "charge", "run-1") as first:
        assert not first.already_applied
        first.tx.incr(counter)
        assert await count(backend, counter) == 0, "queued, not written, inside the block"
    assert first.applied
    async with backend.effect("k1", "charge", "run-2") as second:
        assert second.already_applied and second.committed_by == "run-1"
        second.tx.incr(counter)
    assert not second.applied
    assert await count(backend, counter) == 1


async def test_names_and_keys_are_separate_effects(backend: RedisResultBackend) -> None:
    counter = f"{backend.prefix}:counter"
    for key, name in [("k1", "a"), ("k1", "b"), ("k2", "a"), ("k1", "a")]:
        async with backend.effect(key, name, "run") as fx:
            fx.tx.incr(counter)
    assert await count(backend, counter) == 3


async def test_an_exception_in_the_block_writes_nothing_and_leaves_no_mark(
    backend: RedisResultBackend,
) -> None:
    counter = f"{backend.prefix}:counter"
    with pytest.raises(ValueError, match="midway"):
        async with backend.effect("k1", "charge", "run-1") as fx:
            fx.tx.incr(counter)
            raise ValueError("midway")
    assert await count(backend, counter) == 0
    async with backend.effect("k1", "charge", "run-2") as again:
        assert not again.already_applied
        again.tx.incr(counter)
    assert again.applied and await count(backend, counter) == 1


async def test_two_runs_racing_on_one_effect_commit_it_once(backend: RedisResultBackend) -> None:
    """Both blocks read "not applied" before either commits: WATCH lets one through."""
    counter = f"{backend.prefix}:counter"
    async with backend.effect("k1", "charge", "run-a") as slow:
        slow.tx.incr(counter)
        async with backend.effect("k1", "charge", "run-b") as fast:
            assert not fast.already_applied and not slow.already_applied
            fast.tx.incr(counter)
        assert fast.applied
    assert not slow.applied
    assert slow.committed_by == "run-b"
    assert await count(backend, counter) == 1


async def test_a_race_lost_to_another_effect_of_the_key_retries_the_run(
    backend: RedisResultBackend,
) -> None:
    counter = f"{backend.prefix}:counter"
    with pytest.raises(Retry, match="raced"):
        async with backend.effect("k1", "charge", "run-a") as fx:
            fx.tx.incr(counter)
            async with backend.effect("k1", "email", "run-b"):
                pass  # commits another mark of k1: the hash changed under WATCH
    assert await count(backend, counter) == 0


async def test_a_retried_run_skips_the_effect_its_first_attempt_committed(
    backend: RedisResultBackend,
) -> None:
    app, queue = App(broker=MemoryBroker(), results=backend), unique("q")
    counter = f"{backend.prefix}:counter"
    seen: list[tuple[int, bool, bool]] = []

    @app.task(queue=queue, idempotent=True, retry_backoff=0.01, retry_backoff_max=0.02)
    async def charge(ctx: TaskContext, cents: int) -> int:
        async with ctx.effect("charge") as fx:
            fx.tx.incrby(counter, cents)
        seen.append((ctx.attempt, fx.already_applied, fx.applied))
        if ctx.attempt == 1:
            raise Retry()  # fails after its effect: the retry must not charge again
        return cents

    result = await charge.delay(250)
    await run_until_idle(app, [queue], raise_errors=True)
    assert seen == [(1, False, True), (2, True, False)]
    assert await count(backend, counter) == 250
    assert await result.get(timeout=1) == 250


async def test_effect_needs_a_key_and_a_redis_backend() -> None:
    app, queue = App(broker=MemoryBroker(), results=MemoryResultBackend()), unique("q")
    errors: list[str] = []

    @app.task(queue=queue)
    async def keyless(ctx: TaskContext) -> None:
        try:
            ctx.effect()
        except ConfigurationError as exc:
            errors.append(str(exc))

    @app.task(queue=queue, idempotent=True)
    async def on_memory(ctx: TaskContext) -> None:
        try:
            ctx.effect()
        except ConfigurationError as exc:
            errors.append(str(exc))

    await keyless.delay()
    await on_memory.delay()
    await run_until_idle(app, [queue], concurrency=1, raise_errors=True)
    assert len(errors) == 2
    assert "no idempotency key" in errors[0] and "idempotent=True" in errors[0]
    assert "App(results='redis://...')" in errors[1]
