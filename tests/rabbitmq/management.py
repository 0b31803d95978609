"""Counting on RabbitMQ what AMQP cannot: through the management API (HTTP)."""

from __future__ import annotations

import httpx

from tests.support import require_service, wait_until

MANAGEMENT_URL = "http://127.0.0.1:15672"


async def dead_letter_backlog(queue: str) -> int:
    """Messages of ``queue``'s delay levels that RabbitMQ's dead-letter worker
    holds: they came due while the queue refused publishes (a full queue) and
    are tried again every 180 s (docs/rabbitmq.md). A passive declare does not
    count them; the management API does (``messages_dlx``, refreshed every 5 s).
    """
    require_service(MANAGEMENT_URL)
    async with httpx.AsyncClient(base_url=MANAGEMENT_URL, auth=("guest", "guest")) as client:
        reply = await client.get("/api/queues/%2F", params={"columns": "name,messages_dlx"})
    levels = [q for q in reply.json() if q["name"].startswith(f"{queue}.delay.")]
    return sum(int(q.get("messages_dlx", 0)) for q in levels)


async def held_by_dead_lettering(queue: str, expected: int) -> None:
    """Wait until ``dead_letter_backlog(queue) == expected`` (stats lag up to 5 s)."""

    async def held() -> bool:
        return await dead_letter_backlog(queue) == expected

    await wait_until(held, timeout=15, interval=0.5, message=f"{expected} held by RabbitMQ")
