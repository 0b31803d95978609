"""Rate limits on Redis: GCRA with bookings in one Lua script.

``{prefix}:rate:{key}`` holds the key's TAT (when its next token is free)
and ``{prefix}:rate-booked:{key}`` is a sorted set of booked tokens (member:
the ticket, a message id; score: the token's time). Times are microseconds
of the Redis server's clock (``TIME`` inside the script: workers' clocks
never matter). The script is ``aioack.results.rates.step`` line by line, so
it is atomic across every worker. Both keys expire once nothing in them can
matter (a TAT in the past means "free now", like no key).
"""

from __future__ import annotations

import math

import redis.asyncio as aioredis

from aioack._rate import EARLY_S

# KEYS: TAT, bookings. ARGV: interval, late (both us), ticket, early (us).
# Returns the wait in microseconds (0: run now).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, late = tonumber(ARGV[1]), tonumber(ARGV[2])
local ticket, early = ARGV[3], tonumber(ARGV[4])
local booked = redis.call('ZSCORE', KEYS[2], ticket)
if booked then
  booked = tonumber(booked)
  if now < booked - early then
    return booked - now
  end
  if now <= booked + late then
    redis.call('ZREM', KEYS[2], ticket)
    return 0
  end
end
-- bookings nobody came back for in time are void
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - late - 1)
local start = tonumber(redis.call('GET', KEYS[1]) or '0')
if start < now then
  start = now
end
local keep = math.ceil((start + interval - now + late) / 1000) + 60000
redis.call('SET', KEYS[1], start + interval, 'PX', keep)
if start <= now then
  redis.call('ZREM', KEYS[2], ticket)
  return 0
end
redis.call('ZADD', KEYS[2], start, ticket)
redis.call('PEXPIRE', KEYS[2], keep)
return start - now
"""


class RateScript:
    """The reserve script, registered on one client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._reserve = client.register_script(_RESERVE)

    async def reserve(
        self, keys: tuple[str, str], ticket: str, interval_s: float, late_s: float
    ) -> float:
        wait_us = await self._reserve(
            keys=list(keys), args=[_us(interval_s), _us(late_s), ticket, _us(EARLY_S)]
        )
        return max(0, int(wait_us)) / 1_000_000


def _us(seconds: float) -> int:
    # Whole microseconds: Lua numbers are doubles, exact for integers to 2^53.
    return max(1, math.ceil(seconds * 1_000_000))
