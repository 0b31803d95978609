"""Periodic schedules' state on Redis: one hash, ``{prefix}:schedules``, name -> JSON.

The JSON is ``{"last_fire": ..., "next_fire": ..., "updated_at": ...}``.
Recording is one Lua script, so the last fire only moves forward however
many schedulers write it at once. The hash has no TTL: it holds one small
field per schedule the application ever declared.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from aioack.results.base import ScheduleState

#: KEYS[1] the hash; ARGV: name, fired ("" = none), next fire ("" = none), now.
RECORD = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local state = {}
if old then state = cjson.decode(old) end
if ARGV[2] ~= '' then
  local fired = tonumber(ARGV[2])
  if state['last_fire'] == nil or fired > state['last_fire'] then state['last_fire'] = fired end
end
if ARGV[3] ~= '' then state['next_fire'] = tonumber(ARGV[3]) end
state['updated_at'] = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(state))
return 1
"""


def hash_key(prefix: str) -> str:
    return f"{prefix}:schedules"


def record_args(name: str, fired: float | None, next_fire: float | None, now: float) -> list[str]:
    # repr: every digit of the float survives the trip through Lua's tonumber.
    return [
        name,
        "" if fired is None else repr(fired),
        "" if next_fire is None else repr(next_fire),
        repr(now),
    ]


async def states(
    client: aioredis.Redis, key: str, names: Sequence[str] | None
) -> dict[str, ScheduleState]:
    if names is None:
        raw: dict[Any, Any] = await client.hgetall(key)
        pairs = list(raw.items())
    else:
        wanted = list(names)
        values = await client.hmget(key, wanted) if wanted else []
        pairs = [(n, v) for n, v in zip(wanted, values, strict=True) if v is not None]
    return dict(_decoded(name, value) for name, value in pairs)


def _decoded(name: bytes | str, value: bytes | str) -> tuple[str, ScheduleState]:
    text = name.decode() if isinstance(name, bytes) else name
    state = json.loads(value)
    return text, ScheduleState(
        text,
        _number(state.get("last_fire")),
        _number(state.get("next_fire")),
        _number(state.get("updated_at")) or 0.0,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
