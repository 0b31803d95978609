"""A replay SIGKILLed half-way loses nothing, on every broker other processes share.

300 dead letters, each a message with a known id; ``python -m aioack dlq
replay --all`` moves them ten per round trip and is SIGKILLed as soon as
some copies are back in the queue. Afterwards every message id is still a
dead letter, or back in the queue, or both (a duplicate is allowed, a loss
is not): what is counted is what the broker holds, not what the process said.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from aioack.brokers import Broker, DeadLetter, broker_from_url
from aioack.message import Message, decode
from tests.conftest import broker_url
from tests.support import unique, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LETTERS = 300
#: RabbitMQ replays fast (0.6 s per 1,000 letters): more of them, so that a loaded
#: machine still kills it half-way rather than after the end (inconclusive).
LETTERS_BY_KIND = {"rabbitmq": 1500}
#: Letters per round trip: small, so the replay takes long enough to be killed in it.
BATCH = "10"


async def _queued_ids(broker: Broker, queue: str, letters: int) -> list[str]:
    """The message ids of every message ready in ``queue`` (taken, then given back)."""
    consumer = await broker.consume([queue], prefetch=letters * 2)
    ids = []
    while (delivery := await consumer.get(0.5)) is not None:
        ids.append(decode(delivery.body).id)
    await consumer.close()
    return ids


@pytest.mark.parametrize("kind", ["redis", "rabbitmq", "sqlite"])
async def test_a_replay_sigkilled_half_way_loses_no_message(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/kill.db" if kind == "sqlite" else broker_url(kind)
    letters = LETTERS_BY_KIND.get(kind, LETTERS)
    queue, ids = unique("kill"), [f"m{n:04d}" for n in range(letters)]
    broker = broker_from_url(url)
    await broker.connect()
    try:
        await broker.declare([queue])
        for start in range(0, letters, 50):
            await asyncio.gather(
                *(
                    broker.add_dead_letter(
                        DeadLetter(
                            queue=queue,
                            reason="failed",
                            body=Message(id=mid, task="t").encode(),
                            message_id=mid,
                        )
                    )
                    for mid in ids[start : start + 50]
                )
            )
        replay = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "aioack", "dlq", "replay", "--broker", url, "-Q", queue),
            *("--all", "--batch-size", BATCH),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

        async def under_way() -> bool:
            return (await broker.stats(queue)).ready >= 20

        try:
            await wait_until(under_way, timeout=60, interval=0.005, message="the replay to start")
        finally:
            replay.send_signal(signal.SIGKILL)
            await replay.wait()
        assert replay.returncode == -signal.SIGKILL

        async def settled() -> bool:  # RabbitMQ gives a killed pass's letters back
            stats = await broker.stats(queue)
            return stats.ready + stats.dead >= letters

        with contextlib.suppress(AssertionError):  # a loss never settles: counted below
            await wait_until(settled, timeout=5, message="the killed replay's letters back")
        dead = [letter.message_id for letter in await broker.dead_letters(queue, letters * 2)]
        queued = await _queued_ids(broker, queue, letters)
        assert 0 < len(queued) < letters, "the kill did not land half-way: inconclusive"
        lost = set(ids) - set(dead) - set(queued)
        assert lost == set(), f"{len(lost)} messages lost: {sorted(lost)[:10]}"
        twice = Counter(dead + queued)
        assert set(twice) == set(ids)  # nothing else appeared
        print(
            f"{kind}: killed after {len(queued)} replayed; duplicates: {len(dead) + len(queued) - letters}"
        )
    finally:
        await broker.delete([queue])
        await broker.aclose()
