"""Per-key concurrency slots on Redis: one sorted set per key.

``{prefix}:slots:{key}`` holds one member per run holding a slot (the
run's owner id), scored by its lease deadline in milliseconds of the Redis
server's clock (``TIME`` inside the script: workers' clocks never matter).
Acquiring drops the expired members (runs whose worker died) and adds the
owner if fewer than ``limit`` remain, in one script, so it is atomic across
every worker. The set expires a minute after its longest lease, so a key
nobody uses leaves nothing behind; until then a lapsed member nobody swept
is still its run's to renew, as on the other backends.
"""

from __future__ import annotations

import redis.asyncio as aioredis

# Milliseconds since the epoch by the server's clock; shared by both scripts.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
local keep = lease + 60000
"""

# The key's TTL only grows: a shorter lease must not cut a longer one's member.
_KEEP = """
if redis.call('PTTL', KEYS[1]) < keep then
  redis.call('PEXPIRE', KEYS[1], keep)
end
return 1
"""

_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
"""
    + _KEEP
)

# A member still in the set was never swept by an acquire (even if its lease
# ran out): nobody took its place, so it is still this run's. Gone: lost.
_RENEW = (
    _NOW
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[1])
"""
    + _KEEP
)


class SlotScripts:
    """The slot scripts, registered on one client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    async def acquire(self, key: str, limit: int, owner: str, lease_s: float) -> bool:
        taken = await self._acquire(keys=[key], args=[owner, _ms(lease_s), limit])
        return bool(taken)

    async def renew(self, key: str, owner: str, lease_s: float) -> bool:
        return bool(await self._renew(keys=[key], args=[owner, _ms(lease_s)]))

    async def release(self, key: str, owner: str) -> None:
        await self._client.zrem(key, owner)  # the last member gone, Redis drops the key


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
