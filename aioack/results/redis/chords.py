"""Chords on Redis: a set of completed members and a hash, counted in one script.

``{prefix}:chord:{id}:done`` is the set of member ids that completed (a
duplicate delivery adds nothing); ``{prefix}:chord:{id}`` is a hash with the
chord's ``size`` (fixed by the first member) and ``fired_by``, the member
that completed the set. Adding, counting and setting ``fired_by`` happen in
one Lua script, so two members completing at once cannot both fire, or
neither. Both keys are kept ``keep_s`` (twice the results') from the latest member
(refreshed by each): the count outlives every member's kept result, so the
member completing a slow chord finds the count whole and the lost results
missing (``ChordMemberLost``), instead of starting a new, empty count.
"""

from __future__ import annotations

import redis.asyncio as aioredis

# KEYS: the chord's hash, its member set. ARGV: member id, size, keep (ms).
MEMBER_DONE = """
redis.call('HSETNX', KEYS[1], 'size', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local fired = redis.call('HGET', KEYS[1], 'fired_by')
if not fired and redis.call('SCARD', KEYS[2]) >= tonumber(redis.call('HGET', KEYS[1], 'size')) then
  redis.call('HSET', KEYS[1], 'fired_by', ARGV[1])
  fired = ARGV[1]
end
if fired == ARGV[1] then
  return 1
end
return 0
"""


async def member_done(
    client: aioredis.Redis, prefix: str, chord_id: str, member_id: str, size: int, keep_s: float
) -> bool:
    keys = [f"{prefix}:chord:{chord_id}", f"{prefix}:chord:{chord_id}:done"]
    script = client.register_script(MEMBER_DONE)  # hashed locally; EVALSHA, loaded once
    fires = await script(keys=keys, args=[member_id, size, max(1, int(keep_s * 1000))])
    return bool(fires)
