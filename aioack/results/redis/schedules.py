"""Periodic schedules' state on Redis: one hash, ``{prefix}:schedules``, name -> JSON.

The JSON is ``{"last_fire_ms": ..., "next_fire_ms": ..., "updated_at_ms": ...}``,
Unix times in whole milliseconds (``tick_ms``): Lua's cjson writes numbers
with 14 significant digits, which would round a tick such as
1700000000.1000001 s below itself (so the fired tick would look due again),
while a 13-digit integer survives exactly. Recording is one Lua script, so
the last fire only moves forward however many schedulers write it at once.
The hash has no TTL: it holds one small field per schedule the application
ever declared.

A field that is not such an object (a stray HSET, a truncated write) is read
as a schedule never recorded, with a warning, and the next record replaces it:
one bad field must not stop the schedulers (or the workers they run in).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from aioack.results.base import ScheduleState, tick_ms

logger = logging.getLogger("aioack.periodic")

#: KEYS[1] the hash; ARGV: name, fired ms ("" = none), next fire ms ("" = none), now ms,
#: distrust-after ms ("" = none: a last fire held later than it is replaced by fired).
RECORD = """
local state = {}
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, decoded = pcall(cjson.decode, old)
  if ok and type(decoded) == 'table' and decoded[1] == nil then state = decoded end
end
if ARGV[2] ~= '' then
  local fired = tonumber(ARGV[2])
  local last = state['last_fire_ms']
  local distrust = tonumber(ARGV[5])
  if type(last) ~= 'number' or fired > last or (distrust ~= nil and last > distrust) then
    state['last_fire_ms'] = fired
  end
end
if ARGV[3] ~= '' then state['next_fire_ms'] = tonumber(ARGV[3]) end
state['updated_at_ms'] = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(state))
return 1
"""

_FIELDS = ("last_fire_ms", "next_fire_ms", "updated_at_ms")


def hash_key(prefix: str) -> str:
    return f"{prefix}:schedules"


def record_args(
    name: str,
    fired: float | None,
    next_fire: float | None,
    now: float,
    distrust_after: float | None = None,
) -> list[str]:
    def ms(instant: float | None) -> str:
        return "" if instant is None else str(tick_ms(instant))

    return [name, ms(fired), ms(next_fire), ms(now), ms(distrust_after)]


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
    decoded = (_decoded(name, value) for name, value in pairs)
    return {state.name: state for state in decoded if state is not None}


def _decoded(name: bytes | str, value: bytes | str) -> ScheduleState | None:
    """The state in ``value``, or None (with a warning) if it is not one."""
    text = name.decode(errors="replace") if isinstance(name, bytes) else name
    try:
        state = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        state = None
    if not isinstance(state, dict) or not all(_is_ms(state.get(f)) for f in _FIELDS):
        logger.warning(
            "periodic %s: its state in the result backend is not a schedule record; "
            "read as never fired (the next fire replaces it)",
            text,
            extra={"event": "periodic_bad_state", "schedule": text},
        )
        return None
    return ScheduleState(
        text,
        _seconds(state.get("last_fire_ms")),
        _seconds(state.get("next_fire_ms")),
        _seconds(state.get("updated_at_ms")) or 0.0,
    )


def _is_ms(value: object) -> bool:
    # None: not recorded yet. JSON numbers of whole milliseconds decode as int.
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _seconds(ms: object) -> float | None:
    return ms / 1000 if isinstance(ms, int) else None
