"""``python -m aioack dlq replay`` into a full queue, and refused by the broker, on each
broker other processes share: it stops, says how far it got, and the broker
holds every message once (queued or a dead letter)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aioack import QueueLimit
from aioack.brokers.rabbitmq import RabbitMQBroker
from aioack.cli import ExitCode, main
from aioack.errors import PublishFailed
from aioack.message import Message
from tests.apps import limited
from tests.conftest import broker_url
from tests.integration.dlq_support import (
    KINDS,
    connected,
    dead_letter,
    deleted_after,
    held,
    url_for,
)
from tests.support import unique

#: The App's limit, as its workers know it (RabbitMQ declares it on the queue).
LIMITS = {limited.QUEUE: QueueLimit(max_length=limited.MAX_LENGTH)}


@pytest.fixture(autouse=True)
def _restore_limited_app() -> Iterator[None]:
    """main() points the imported App at --broker; undo it for later tests."""
    broker = limited.app.broker
    yield
    limited.app.use_broker(broker)


@pytest.mark.parametrize("kind", KINDS)
def test_a_replay_into_a_full_queue_stops_says_how_far_it_got_and_exits_9(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, queue = url_for(kind, tmp_path), limited.QUEUE
    letters = [f"l{n}" for n in range(5)]

    async def setup() -> None:
        broker = await connected(url, LIMITS)
        try:
            await broker.declare([queue])
            await broker.publish(queue, Message(id="queued", task="t").encode(), message_id="q")
        finally:
            await broker.aclose()
        await dead_letter(url, queue, letters, LIMITS)

    asyncio.run(setup())
    with deleted_after(url, queue):
        argv = ["dlq", "replay", "tests.apps.limited:app", "--broker", url, "-Q", queue, "--all"]
        assert main([*argv, "--batch-size", "2"]) == ExitCode.QUEUE_FULL
        err = capsys.readouterr().err
        queued, dead = asyncio.run(held(url, queue, LIMITS))
        replayed = len(queued) - 1
        assert replayed in ((2, 3) if kind == "rabbitmq" else (2,))  # one more: quorum queues
        assert f"{queue} is full (max_length=3): replayed {replayed} dead letters" in err
        assert "still dead letters, none lost or duplicated" in err
        assert Counter(queued + dead) == Counter(["queued", *letters])
        # Drained: the same command finishes the job.
        assert main(argv) == ExitCode.OK
        queued, dead = asyncio.run(held(url, queue, LIMITS))
        assert (sorted(queued), dead) == (sorted(letters[replayed:]), [])


def test_a_replay_refused_by_the_broker_says_what_is_true(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # RabbitMQ publishes a batch's copies at once: one refused (here: PublishFailed,
    # injected) leaves its letter, and only its letter, a dead letter.
    url, queue = broker_url("rabbitmq"), unique("refused")
    letters = [f"l{n}" for n in range(6)]
    asyncio.run(dead_letter(url, queue, letters))
    publish = RabbitMQBroker._publish

    async def refuse_l3(self: RabbitMQBroker, queue: str, body: bytes, mid: str, *a: Any) -> None:
        if mid == "l3":
            raise PublishFailed("refused for the test")
        await publish(self, queue, body, mid, *a)

    with deleted_after(url, queue):
        monkeypatch.setattr(RabbitMQBroker, "_publish", refuse_l3)
        argv = ["dlq", "replay", "--broker", url, "-Q", queue, "--all", "--batch-size", "6"]
        assert main(argv) == ExitCode.BROKER_UNAVAILABLE
        monkeypatch.undo()
        err = capsys.readouterr().err
        assert "refused for the test" in err and "every other letter is still a dead letter" in err
        queued, dead = asyncio.run(held(url, queue, LIMITS))
        assert "l3" in dead and "l3" not in queued
        assert Counter(queued + dead) == Counter(letters)  # none lost, none twice
