"""RedisResultBackend: records as keys with a TTL, waiting through pub/sub.

- A record is a JSON string at ``{prefix}:result:{task_id}`` with a TTL of
  ``result_expires`` seconds.
- Storing a final record publishes on ``{prefix}:done:{task_id}``. A waiter
  subscribes *before* reading the record, so a result stored between the
  read and the wait still wakes it; it then sleeps on its socket (no polling).
- The idempotency ledger is a hash per key, ``{prefix}:idem:{key}``:
  ``state=running`` with the owner's lease as the key's TTL, then
  ``state=done`` pointing at the task id whose record holds the result. The
  claim, the renewal and the completion are Lua scripts, so they are atomic.
- Effect marks are a hash per key, ``{prefix}:effects:{key}`` (effect name ->
  task id that committed it), kept ``result_expires`` seconds. An effect
  block WATCHes it, reads its mark, and commits its queued writes with the
  mark in one MULTI/EXEC: a mark set by another run in between makes EXEC
  fail, so two runs can never both commit one effect.
- Revocations are a stream, ``{prefix}:revocations``, that workers tail
  (``revocations.py``).
- Concurrency slots are a sorted set per key, ``{prefix}:slots:{key}``
  (``slots.py``).
- A chord is a set of its completed members and a hash with its size and
  the member that fired it, ``{prefix}:chord:{id}`` (``chords.py``).
- Rate limits are a TAT and a sorted set of booked tokens per key,
  ``{prefix}:rate:{key}`` and ``{prefix}:rate-booked:{key}`` (``rates.py``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import BaseModel, ConfigDict, Field
from redis.commands.core import AsyncScript

from aioack._cancel import raise_swallowed_cancel
from aioack._connect import redis_connect_error
from aioack.errors import BrokerError, BrokerUnavailable, Retry
from aioack.results.base import (
    CHORD_COUNT_KEEP_FACTOR,
    DEFAULT_RESULT_EXPIRES_S,
    Claim,
    ClaimStatus,
    Effect,
    ResultBackend,
    ResultRecord,
    Revocation,
    ScheduleState,
)
from aioack.results.redis import chords, revocations, schedules, unique
from aioack.results.redis.rates import RateScript
from aioack.results.redis.slots import SlotScripts
from aioack.results.redis.writes import Command, WriteBatcher
from aioack.urls import REDIS_CLIENT_QUERY, masked, parse_options

_CLAIM = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'done' then
  return {'completed', redis.call('HGET', KEYS[1], 'task_id')}
end
if state == 'running' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return {'busy', ''}
end
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[1], 'task_id', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'claimed', ''}
"""

# A key that expired with nobody taking it over is still this run's to hold:
# it is taken again. Held by another owner, or done, it is lost.
_RENEW = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == false then
  redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[1], 'task_id', ARGV[3])
elseif state ~= 'running' or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'state') == 'running'
   and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# A final record and its wake-up in one command (cheaper than MULTI/SET/PUBLISH/EXEC).
_STORE_FINAL = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', KEYS[2], '1')
return 1
"""

# The first completion wins: a run that lost its lease and finished late
# stores its own record but does not repoint the key.
_COMPLETE = """
if redis.call('HGET', KEYS[2], 'state') ~= 'done' then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'state', 'done', 'owner', ARGV[3], 'task_id', ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', KEYS[3], '1')
return 1
"""


class RedisResultOptions(BaseModel):
    """Options of the Redis result backend (URL query or keyword arguments). Seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Seconds a record, a completed idempotency key and its effect marks are kept.
    result_expires: float = Field(default=DEFAULT_RESULT_EXPIRES_S, gt=0)
    key_prefix: str = Field(default="aioack", min_length=1)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """redis-py errors become aioack's at this boundary (httpx-style mapping)."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"result backend unreachable: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise BrokerError(f"result backend error: {exc}") from exc


class RedisResultBackend(ResultBackend):
    """``RedisResultBackend.from_url("redis://127.0.0.1:6379/0?result_expires=3600")``."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", **options: Any) -> None:
        redis_url, opts = parse_options(
            url, options, RedisResultOptions, what="Redis results", client_query=REDIS_CLIENT_QUERY
        )
        self.result_expires_s = opts.result_expires
        self.prefix = opts.key_prefix
        self._url = redis_url
        self._session: _Session | None = None

    @property
    def location(self) -> str:
        return masked(self._url)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisResultBackend:
        """``redis://host:6379/0?result_expires=3600&key_prefix=myapp``; typos refused.

        Raises:
            ConfigurationError: an unknown option (with the closest known name) or a bad value.
        """
        return cls(url, **options)

    def _open(self) -> _Session:
        if self._session is None:
            self._session = _Session(aioredis.Redis.from_url(self._url))
        return self._session

    @property
    def client(self) -> aioredis.Redis:
        return self._open().client

    @property
    def scripts(self) -> _Scripts:
        """The Lua scripts, run by EVALSHA (loaded again if Redis forgot them)."""
        return self._open().scripts

    async def connect(self) -> None:
        try:
            await self.client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            # A connect says what to change (database, login) or check (the server).
            socket = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
            reachable = isinstance(exc, redis.exceptions.AuthenticationError) or not isinstance(
                exc, socket
            )
            raise redis_connect_error(
                "the Redis result backend", self._url, exc, reachable=reachable
            ) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            session.writes.close()
            await session.client.aclose()

    def _result_key(self, task_id: str) -> str:
        return f"{self.prefix}:result:{task_id}"

    def _channel(self, task_id: str) -> str:
        return f"{self.prefix}:done:{task_id}"

    def _idem_key(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    def _effects_key(self, key: str) -> str:
        return f"{self.prefix}:effects:{key}"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.result_expires_s * 1000))

    async def store(self, record: ResultRecord) -> None:
        body, key = record.model_dump_json(), self._result_key(record.task_id)
        with _translated():
            if record.state.is_final:
                channel = self._channel(record.task_id)
                await self._batched_script(
                    self.scripts.store_final, [key, channel], [body, self._ttl_ms]
                )
            else:
                await self._batched(lambda pipe: pipe.set(key, body, px=self._ttl_ms))

    async def _batched(self, command: Command) -> Any:
        """Send ``command`` with the other writes waiting (see writes.py)."""
        return await self._open().writes.run(command)

    async def _batched_script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run ``script`` by EVALSHA in the next batch of writes."""
        try:
            return await self._batched(
                lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args)
            )
        except redis.exceptions.NoScriptError:  # Redis forgot it (restart, flush): it never ran
            return await script(keys=keys, args=args)

    async def fetch(self, task_id: str) -> ResultRecord | None:
        with _translated():
            raw = await self.client.get(self._result_key(task_id))
        return None if raw is None else ResultRecord.model_validate_json(raw)

    async def wait(self, task_id: str, timeout_s: float | None) -> ResultRecord | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with _translated():
            async with self.client.pubsub() as pubsub:
                await pubsub.subscribe(self._channel(task_id))
                # Read after subscribing: a store in between still publishes to us.
                record = await self.fetch(task_id)
                while record is None or not record.state.is_final:
                    remaining_s = None if deadline is None else deadline - time.monotonic()
                    if remaining_s is not None and remaining_s <= 0:
                        return None
                    # Blocks on the socket until a publish (or the deadline);
                    # None is the subscribe confirmation or the timeout.
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=remaining_s
                    )
                    raise_swallowed_cancel()  # a cancelled get() must not go on waiting
                    if message is not None:
                        record = await self.fetch(task_id)
                return record

    # -- revocations (a stream workers tail: aioack/results/redis/revocations.py) --

    async def revoke(self, items: Sequence[Revocation]) -> None:
        with _translated():
            await revocations.add(self.client, f"{self.prefix}:revocations", items)

    async def revocations_after(
        self, cursor: str | None, wait_s: float
    ) -> tuple[list[Revocation], str]:
        with _translated():
            found = await revocations.read_after(
                self.client, f"{self.prefix}:revocations", cursor, wait_s
            )
        raise_swallowed_cancel()  # a worker's watch loop must stop when cancelled
        return found

    # -- the idempotency ledger ---------------------------------------------------

    async def claim(self, key: str, owner: str, task_id: str, lease_s: float) -> Claim:
        with _translated():
            status, completed_by = await self.scripts.claim(
                keys=[self._idem_key(key)], args=[owner, task_id, int(lease_s * 1000)]
            )
        status = ClaimStatus(_text(status))
        return Claim(status, _text(completed_by) if status is ClaimStatus.COMPLETED else None)

    async def renew(self, key: str, owner: str, task_id: str, lease_s: float) -> bool:
        with _translated():
            renewed = await self.scripts.renew(
                keys=[self._idem_key(key)], args=[owner, int(lease_s * 1000), task_id]
            )
        return bool(renewed)

    @contextlib.asynccontextmanager
    async def effect(self, key: str, name: str, task_id: str) -> AsyncIterator[Effect]:
        marks = self._effects_key(key)
        async with self.client.pipeline(transaction=True) as pipe:
            with _translated():
                await pipe.watch(marks)
                before = await pipe.hget(marks, name)
            # MULTI before the block: the writes it queues are buffered, even
            # when they are to be discarded (a watching pipeline runs at once).
            pipe.multi()  # type: ignore[no-untyped-call]
            effect = Effect(key, name, pipe, None if before is None else _text(before))
            yield effect  # an exception in the block discards its writes
            if effect.committed_by is not None:
                return  # committed by an earlier run: the writes are dropped
            pipe.hset(marks, name, task_id)
            pipe.pexpire(marks, self._ttl_ms)
            if await self._commit(pipe):
                effect.applied = True
            else:
                await self._lost_race(effect)

    @staticmethod
    async def _commit(pipe: Any) -> bool:
        """EXEC the block's writes with its mark; False when WATCH refused them."""
        with _translated():
            try:
                await pipe.execute()
            except redis.exceptions.WatchError:
                return False
        return True

    async def _lost_race(self, effect: Effect) -> None:
        """EXEC refused: the marks changed since WATCH. Nothing of ours was written."""
        with _translated():
            winner = await self.client.hget(self._effects_key(effect.key), effect.name)
        if winner is None:  # another effect of this key changed the hash: try the run again
            raise Retry(
                0.0, reason=f"effect {effect.name!r} of key {effect.key!r} raced; not applied"
            )
        effect.committed_by = _text(winner)  # a concurrent run committed it first

    async def complete(self, key: str, owner: str, record: ResultRecord) -> None:
        keys = (
            self._result_key(record.task_id),
            self._idem_key(key),
            self._channel(record.task_id),
        )
        with _translated():
            await self._batched_script(
                self.scripts.complete,
                list(keys),
                [record.model_dump_json(), self._ttl_ms, owner, record.task_id],
            )

    async def release(self, key: str, owner: str) -> None:
        with _translated():
            await self.scripts.release(keys=[self._idem_key(key)], args=[owner])

    # -- unique enqueue (aioack/results/redis/unique.py) ------------------------

    async def reserve_unique(self, key: str, task_id: str, ttl_s: float) -> str | None:
        name = unique.unique_key(self.prefix, key)
        with _translated():
            reply = await self._batched(
                lambda pipe: unique.queue_reserve(pipe, name, task_id, ttl_s)
            )
        return unique.holder(reply)

    async def unreserve_unique(self, key: str, task_id: str) -> None:
        with _translated():
            # EVAL, not a registered script: this runs only after a failed publish.
            await self.client.eval(
                unique.UNRESERVE, 1, unique.unique_key(self.prefix, key), task_id
            )

    # -- concurrency slots (slots.py) ---------------------------------------------

    def _slots_key(self, key: str) -> str:
        return f"{self.prefix}:slots:{key}"

    async def acquire_slot(self, key: str, limit: int, owner: str, lease_s: float) -> bool:
        with _translated():
            return await self._open().slots.acquire(self._slots_key(key), limit, owner, lease_s)

    async def renew_slot(self, key: str, owner: str, lease_s: float) -> bool:
        with _translated():
            return await self._open().slots.renew(self._slots_key(key), owner, lease_s)

    async def release_slot(self, key: str, owner: str) -> None:
        with _translated():
            await self._open().slots.release(self._slots_key(key), owner)

    # -- chords (chords.py) ---------------------------------------------------------

    async def chord_member_done(self, chord_id: str, member_id: str, size: int) -> bool:
        with _translated():
            return await chords.member_done(
                self._open().client,
                self.prefix,
                chord_id,
                member_id,
                size,
                CHORD_COUNT_KEEP_FACTOR * self.result_expires_s,
            )

    # -- rate limits (rates.py) ----------------------------------------------------

    async def reserve_rate(self, key: str, ticket: str, interval_s: float, late_s: float) -> float:
        keys = (f"{self.prefix}:rate:{key}", f"{self.prefix}:rate-booked:{key}")
        with _translated():
            return await self._open().rates.reserve(keys, ticket, interval_s, late_s)

    # -- periodic schedules (schedules.py) ------------------------------------------

    async def record_schedule(
        self,
        name: str,
        *,
        fired: float | None,
        next_fire: float | None,
        distrust_after: float | None = None,
    ) -> None:
        args = schedules.record_args(name, fired, next_fire, time.time(), distrust_after)
        with _translated():
            await self.client.eval(schedules.RECORD, 1, schedules.hash_key(self.prefix), *args)

    async def schedule_states(self, names: Sequence[str] | None = None) -> dict[str, ScheduleState]:
        with _translated():
            return await schedules.states(self.client, schedules.hash_key(self.prefix), names)


class _Session:
    """One client and what is bound to it: made together, closed together."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.scripts = _Scripts(client)
        self.writes = WriteBatcher(client)
        self.slots = SlotScripts(client)
        self.rates = RateScript(client)


class _Scripts:
    """This backend's Lua scripts, registered on one client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.claim = client.register_script(_CLAIM)
        self.renew = client.register_script(_RENEW)
        self.release = client.register_script(_RELEASE)
        self.complete = client.register_script(_COMPLETE)
        self.store_final = client.register_script(_STORE_FINAL)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
