"""Talking to Redis: the connection pool and the scripts.

Cancellation safety: every command borrows a connection from a pool for its
own duration. redis-py drops (disconnects) a connection whose command was
interrupted, by a CancelledError or anything else, before it goes back to the
pool, so a task cancelled by its ``time_limit`` mid-command can never leave
an unread reply behind for the next command (the off-by-one replies of
redis-py#2624/#2665 need a connection shared across tasks; we never share
one). Acks go through a batcher task of their own (``acks``), so cancelling
the task that asked for an ack does not cut the ack's round trip either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aioack.brokers.redis.errors import connect_error, translate_errors
from aioack.brokers.redis.keys import Keys, queue_keys
from aioack.brokers.redis.scripts import SCRIPTS
from aioack.errors import BrokerUnavailable

logger = logging.getLogger("aioack.brokers.redis")

Arg = bytes | str | int | float
#: One script run: (script name, keys, args).
Call = tuple[str, Sequence[str], Sequence[Arg]]


def _identity(response: Any, **_options: Any) -> Any:
    return response


class RedisIO:
    """The broker's one handle on Redis: a pool of connections and the scripts."""

    def __init__(self, url: str, *, prefix: str, group: str, pool_kwargs: dict[str, Any]) -> None:
        self._url = url
        self._prefix = prefix
        self.group = group
        self._pool_kwargs = pool_kwargs
        self._client: Redis | None = None
        self._keys: dict[str, Keys] = {}

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise BrokerUnavailable("redis broker is not connected; call connect() first")
        return self._client

    async def connect(self) -> None:
        if self._client is not None:
            return
        with translate_errors("connect"):
            pool = ConnectionPool.from_url(
                self._url,
                decode_responses=False,
                protocol=2,
                # No silent retries: a failed command surfaces as
                # BrokerUnavailable and the caller (the worker) decides. A retry
                # here could re-run an XADD whose reply was lost.
                retry=Retry(NoBackoff(), 0),
                **self._pool_kwargs,
            )
            client = Redis(connection_pool=pool)
            # Raw replies (flat field lists, duplicates kept): wrong-shaped
            # entries must reach the worker byte for byte.
            client.set_response_callback("XREADGROUP", _identity)
            client.set_response_callback("XRANGE", _identity)
            try:
                await client.ping()
            except BaseException as exc:
                await client.aclose()
                await pool.disconnect()
                if isinstance(exc, redis_errors.RedisError | OSError):
                    raise connect_error("the Redis broker", self._url, exc) from exc
                raise
        self._client = client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
                await client.connection_pool.disconnect()
            except (redis_errors.RedisError, OSError) as exc:  # closing: nothing to save
                logger.debug("redis: error while closing the pool: %s", exc)

    def keys(self, queue: str) -> Keys:
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = queue_keys(self._prefix, queue)
        return keys

    async def ensure_groups(self, queues: Sequence[str]) -> None:
        """Create each queue's stream and consumer group unless they exist.

        The group starts at id 0, so messages published before it existed are
        delivered too.
        """
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.xgroup_create(self.keys(queue).stream, self.group, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result

    async def eval(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script by SHA, loading it once when Redis does not know it (restart, flush)."""
        script = SCRIPTS[name]
        client = self.client
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            await client.script_load(script.source)
            return await client.evalsha(script.sha, len(keys), *keys, *args)

    async def eval_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run several scripts in one round trip (a pipeline, not a transaction)."""
        if len(calls) == 1:
            name, keys, args = calls[0]
            return [await self.eval(name, keys, args)]
        pipe = self.client.pipeline(transaction=False)
        for name, keys, args in calls:
            pipe.evalsha(SCRIPTS[name].sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        for i, result in enumerate(results):
            # A script Redis did not know never ran: running it now is safe.
            if isinstance(result, redis_errors.NoScriptError):
                results[i] = await self.eval(*calls[i])
            elif isinstance(result, Exception):
                raise result
        return results
