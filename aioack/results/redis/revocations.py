"""Revocations on Redis: one stream, ``{prefix}:revocations``, that workers tail.

A stream is both the broadcast and the memory: a worker reads every entry
from the oldest kept when it starts (so a revocation made before it started
still holds), then blocks on XREAD for new ones (so a running worker hears
at once). Entries older than ``MAX_REVOKE_EXPIRES_S`` are trimmed on each
add (MINID); each entry carries its own expiry, which readers apply.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from aioack.results import revocations
from aioack.results.base import Revocation

#: The cursor of an empty stream: every entry is after it.
START = "0-0"


async def add(client: aioredis.Redis, key: str, items: Sequence[Revocation]) -> None:
    oldest_kept_ms = int((time.time() - revocations.MAX_REVOKE_EXPIRES_S) * 1000)
    async with client.pipeline(transaction=False) as pipe:
        for item in items:
            fields: Any = {
                "task_id": item.task_id,
                "terminate": "1" if item.terminate else "0",
                "expires_at": repr(item.expires_at),
            }
            pipe.xadd(key, fields, minid=oldest_kept_ms, approximate=True)
        await pipe.execute()


async def read_after(
    client: aioredis.Redis, key: str, cursor: str | None, wait_s: float
) -> tuple[list[Revocation], str]:
    if cursor is None:
        # Start-up: everything kept, oldest first; the cursor is the last entry read.
        entries: Any = await client.xrange(key, count=revocations.READ_BATCH)
        cursor = START
    else:
        block_ms = int(wait_s * 1000) or None
        # RESP2: [[stream, [(id, fields), ...]]] (redis-py types RESP3's dict too).
        reply: Any = await client.xread({key: cursor}, count=revocations.READ_BATCH, block=block_ms)
        entries = reply[0][1] if reply else []
    found: list[Revocation] = []
    for entry_id, fields in entries or ():
        cursor = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        if not fields:
            continue
        item = revocations.decode(
            fields.get(b"task_id"), fields.get(b"terminate"), fields.get(b"expires_at")
        )
        if item is not None:
            found.append(item)
    return revocations.live(found, time.time()), cursor
