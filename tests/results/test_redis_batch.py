"""Coalesced result writes on real Redis: batched, each reply to its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import Pipeline

from aioack.errors import BrokerUnavailable
from aioack.results import ResultRecord, State
from aioack.results.redis import RedisResultBackend
from aioack.results.redis.writes import WriteBatcher
from tests.support import REDIS_URL, require_service, unique


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    require_service(REDIS_URL)
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


class CountingBatcher(WriteBatcher):
    """Counts the pipelines sent."""

    sent = 0

    async def _send(self, batch: list) -> None:  # type: ignore[type-arg]
        self.sent += 1
        await super()._send(batch)


async def test_concurrent_writes_share_pipelines_and_get_their_own_replies(
    client: aioredis.Redis,
) -> None:
    batcher, key = CountingBatcher(client), unique("batch")
    try:
        replies = await asyncio.gather(
            *(batcher.run(lambda pipe, i=i: pipe.hset(key, f"f{i}", i)) for i in range(100))
        )
        assert replies == [1] * 100
        assert batcher.sent < 10, "100 writes issued at once must not take 100 round trips"
        assert len(await client.hgetall(key)) == 100
    finally:
        await client.delete(key)


async def test_an_error_reply_goes_to_its_own_caller_only(client: aioredis.Redis) -> None:
    batcher, key = WriteBatcher(client), unique("batch")
    try:
        await client.set(key, "a string")

        def wrong_type(pipe: Pipeline) -> object:
            return pipe.hset(key, "f", 1)

        results = await asyncio.gather(
            batcher.run(lambda pipe: pipe.incr(f"{key}:n")),
            batcher.run(wrong_type),
            batcher.run(lambda pipe: pipe.incr(f"{key}:n")),
            return_exceptions=True,
        )
        assert results[0] == 1 and results[2] == 2
        assert isinstance(results[1], redis.exceptions.ResponseError)
    finally:
        await client.delete(key, f"{key}:n")


async def test_a_cancelled_caller_does_not_disturb_the_others(client: aioredis.Redis) -> None:
    batcher, key = WriteBatcher(client), unique("batch")
    try:
        first = asyncio.create_task(batcher.run(lambda pipe: pipe.incr(key)))
        second = asyncio.create_task(batcher.run(lambda pipe: pipe.incr(key)))
        await asyncio.sleep(0)
        first.cancel()
        assert await second in (1, 2)
        third = await batcher.run(lambda pipe: pipe.incr(key))
        assert third == int(await client.get(key))
    finally:
        await client.delete(key)


async def test_an_unreachable_backend_fails_every_waiting_store() -> None:
    backend = RedisResultBackend("redis://127.0.0.1:1/0", key_prefix=unique("aioack-test"))
    try:
        records = [ResultRecord(task_id=f"t{i}", state=State.SUCCESS) for i in range(5)]
        results = await asyncio.gather(*(backend.store(r) for r in records), return_exceptions=True)
        assert all(isinstance(r, BrokerUnavailable) for r in results), results
    finally:
        await backend.aclose()


async def test_a_final_store_reloads_its_script_after_redis_forgot_it() -> None:
    require_service(REDIS_URL)
    backend = RedisResultBackend(REDIS_URL, key_prefix=unique("aioack-test"))
    try:
        await backend.client.script_flush()
        await backend.store(ResultRecord(task_id="t1", state=State.SUCCESS, result=7))
        record = await backend.fetch("t1")
        assert record is not None and record.result == 7
    finally:
        await backend.client.delete(f"{backend.prefix}:result:t1")
        await backend.aclose()
