"""Unique-enqueue keys on Redis: one string per key, ``{prefix}:unique:{key}`` -> task id.

Taking a key is one command, ``SET key id NX GET PX ttl`` (Redis 7.0+, which
aioack needs anyway): it sets the key only if it is absent and returns the
value it found, so "take it, or tell me who holds it" is atomic without a
script, and the window is the key's own TTL (nothing to sweep). Freeing it
compares the holder first, in Lua, so a producer whose publish failed after
its window ended never frees a key another producer took since.
"""

from __future__ import annotations

from redis.asyncio.client import Pipeline

#: Delete KEYS[1] only while ARGV[1] (the task id) holds it.
UNRESERVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def unique_key(prefix: str, key: str) -> str:
    return f"{prefix}:unique:{key}"


def queue_reserve(pipe: Pipeline, key: str, task_id: str, ttl_s: float) -> None:
    """Queue the atomic take on ``pipe``; its reply is None (taken) or the holder's id."""
    pipe.set(key, task_id, nx=True, get=True, px=max(1, int(ttl_s * 1000)))


def holder(reply: bytes | str | None) -> str | None:
    if reply is None:
        return None
    return reply.decode() if isinstance(reply, bytes) else reply
