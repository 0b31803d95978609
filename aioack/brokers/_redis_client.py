"""Talking to Redis: the connection pool, key names, scripts, error translation, ack batching.

Cancellation safety: every command borrows a connection from a pool for its
own duration. redis-py drops (disconnects) a connection whose command was
interrupted, by a CancelledError or anything else, before it goes back to the
pool, so a task cancelled by its ``time_limit`` mid-command can never leave
an unread reply behind for the next command (the off-by-one replies of
redis-py#2624/#2665 need a connection shared across tasks; we never share
one). Acks go through a batcher task of their own, so cancelling the task
that asked for an ack does not cut the ack's round trip either.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aioack.brokers._redis_scripts import SCRIPTS
from aioack.errors import AioackError, BrokerError, BrokerUnavailable, ConfigurationError

logger = logging.getLogger("aioack.brokers.redis")

Arg = bytes | str | int | float
#: One script run: (script name, keys, args).
Call = tuple[str, Sequence[str], Sequence[Arg]]


@contextmanager
def translate_errors(action: str, other: type[BrokerError] = BrokerError) -> Iterator[None]:
    """Turn whatever redis-py (or the socket under it) raised into aioack's tree.

    Connection trouble is BrokerUnavailable; any other Redis error is ``other``
    (PublishFailed where Redis refused a message, e.g. OOM).
    """
    try:
        yield
    except AioackError:
        raise
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"redis {action}: {type(exc).__name__}: {exc}") from exc
    except redis_errors.ReadOnlyError as exc:
        # A replica answered (failover in progress): the primary is unavailable.
        raise BrokerUnavailable(f"redis {action}: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise other(f"redis {action}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Keys:
    stream: str
    delayed: str
    bodies: str
    dead: str


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
            except BaseException:
                await client.aclose()
                await pool.disconnect()
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
            _check_queue_name(queue)
            base = f"{self._prefix}:{{{queue}}}"
            keys = Keys(f"{base}:stream", f"{base}:delayed", f"{base}:bodies", f"{base}:dead")
            self._keys[queue] = keys
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


def _check_queue_name(queue: str) -> None:
    if not queue or "{" in queue or "}" in queue:
        raise ConfigurationError(
            f"queue name {queue!r} cannot be used on Redis: it must be non-empty and "
            "hold no braces (they delimit the cluster hash tag)"
        )
    try:
        queue.encode()
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"queue name {queue!r} is not valid UTF-8 text") from exc


class AckBatcher:
    """Coalesces concurrent acks into one round trip.

    ``submit`` queues an ack and returns a future; a flush task started on
    the next loop iteration sends every ack queued so far in one pipeline
    (one fenced ACK script per stream and consumer). Acks queued while a
    flush is in flight go out in the next one.
    """

    def __init__(self, io: RedisIO) -> None:
        self._io = io
        self._pending: list[tuple[str, str, bytes, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, stream: str, consumer: str, entry_id: bytes) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, consumer, entry_id, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="aioack-redis-acks")
        return future

    async def in_flight(self) -> None:
        """Wait for the acks already queued to reach Redis (never raises)."""
        task = self._task
        if task is not None:
            await asyncio.wait([task])

    async def drain(self) -> None:
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._flush(batch)
        finally:
            self._task = None

    async def _flush(self, batch: list[tuple[str, str, bytes, asyncio.Future[bool]]]) -> None:
        groups: dict[tuple[str, str], list[tuple[bytes, asyncio.Future[bool]]]] = defaultdict(list)
        for stream, consumer, entry_id, future in batch:
            groups[(stream, consumer)].append((entry_id, future))
        calls: list[Call] = [
            ("ack", [stream], [self._io.group, consumer, *(i for i, _ in items)])
            for (stream, consumer), items in groups.items()
        ]
        try:
            with translate_errors("ack"):
                results = await self._io.eval_many(calls)
        except Exception as exc:
            # Every waiter gets an answer, whatever went wrong: an ack must never hang.
            error = exc if isinstance(exc, AioackError) else BrokerError(f"redis ack: {exc!r}")
            for _, _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for items, flags in zip(groups.values(), results, strict=True):
            for (_, future), flag in zip(items, flags, strict=True):
                if not future.done():
                    future.set_result(flag == ord("1"))
