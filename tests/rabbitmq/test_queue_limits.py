"""Queue limits on RabbitMQ: x-max-length with reject-publish, what is not counted,
queues declared before, and limits set by a policy instead."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from aioack import ConfigurationError, QueueFull, QueueLimit
from aioack.brokers.rabbitmq import RabbitMQBroker
from aioack.brokers.rabbitmq.topology import work_queue_args
from tests.rabbitmq.management import MANAGEMENT_URL, dead_letter_backlog
from tests.support import require_service, unique, wait_until


async def _fill(broker: RabbitMQBroker, queue: str, at_most: int = 20) -> int:
    for i in range(at_most):
        try:
            await broker.publish(queue, f"m{i}".encode(), message_id=f"m{i}")
        except QueueFull:
            return i
    raise AssertionError(f"{queue} took {at_most} messages and never refused one")


def test_limits_rabbitmq_cannot_hold_are_refused_when_given() -> None:
    with pytest.raises(ConfigurationError, match="max_unacked"):
        RabbitMQBroker().use_limits({"q": QueueLimit(max_unacked=5)})
    with pytest.raises(ConfigurationError, match="quorum"):
        RabbitMQBroker(queue_type="classic").use_limits({"q": QueueLimit(max_length=5)})
    # A watermark alone asks nothing of the queue: fine on classic queues too.
    RabbitMQBroker(queue_type="classic").use_limits({"q": QueueLimit(length_watermark=5)})


def test_max_length_is_declared_as_an_argument_unless_a_policy_sets_it() -> None:
    by_argument = work_queue_args(RabbitMQBroker().options, "q", 7)
    assert (by_argument["x-max-length"], by_argument["x-overflow"]) == (7, "reject-publish")
    assert "x-max-length" not in work_queue_args(RabbitMQBroker(limit_by="policy").options, "q", 7)


async def test_a_queue_declared_before_without_the_limit_is_refused_with_what_to_do(
    make_rabbit: Callable[..., RabbitMQBroker], rabbit: RabbitMQBroker, queue_name: str
) -> None:
    await rabbit.declare([queue_name])
    limited = make_rabbit()
    limited.use_limits({queue_name: QueueLimit(max_length=5)})
    async with limited:
        with pytest.raises(ConfigurationError, match=r"max_length.*limit_by=policy"):
            await limited.declare([queue_name])


async def test_a_delayed_message_is_not_counted_and_waits_at_rabbitmq_for_room(
    rabbit: RabbitMQBroker, queue_name: str
) -> None:
    rabbit.use_limits({queue_name: QueueLimit(max_length=2)})
    await rabbit.declare([queue_name])
    taken = await _fill(rabbit, queue_name)
    # The delay levels are other queues: x-max-length does not see them.
    await rabbit.publish(queue_name, b"later", message_id="later", delay_s=0.05)
    # Due while the queue refuses publishes, RabbitMQ's dead-letter worker
    # (at-least-once) usually has it refused too, keeps it and tries again
    # later: not lost, but neither ready nor delayed to AMQP. (Measured on
    # 3.10, it sometimes gets in past the limit instead.)

    async def arrived_or_held() -> bool:
        stats = await rabbit.stats(queue_name)
        if stats.ready == taken + 1:
            return True
        return (stats.ready, stats.delayed) == (taken, 0) and (
            await dead_letter_backlog(queue_name) == 1
        )

    await wait_until(arrived_or_held, timeout=15, interval=0.5, message="arrived, or held")
    if (await rabbit.stats(queue_name)).ready == taken:
        # Held: invisible to AMQP, so stats() counts it as delayed only through
        # the management API (what inspect and the metrics show).
        watching = rabbit.with_management(MANAGEMENT_URL)
        async with watching:
            assert (await watching.stats(queue_name)).delayed == 1


@pytest.fixture
async def policy() -> AsyncIterator[Callable[[str, int], object]]:
    """Set a max-length policy through the management API; removed afterwards."""
    require_service(MANAGEMENT_URL)
    made: list[str] = []
    async with httpx.AsyncClient(base_url=MANAGEMENT_URL, auth=("guest", "guest")) as client:

        async def set_policy(queue: str, max_length: int) -> None:
            name = unique("aioack-test-limit")
            definition = {"max-length": max_length, "overflow": "reject-publish"}
            body = {"pattern": f"^{queue}$", "definition": definition, "apply-to": "queues"}
            reply = await client.put(f"/api/policies/%2F/{name}", json=body)
            reply.raise_for_status()
            made.append(name)

            async def applied() -> bool:
                path = f"/api/queues/%2F/{urllib.parse.quote(queue, safe='')}"
                info = (await client.get(path)).json()
                return info.get("effective_policy_definition", {}).get("max-length") == max_length

            await wait_until(applied, timeout=10, message="the policy applied to the queue")

        yield set_policy
        for name in made:
            await client.delete(f"/api/policies/%2F/{name}")


async def test_a_policy_limits_a_queue_declared_before_and_refusals_are_queue_full(
    make_rabbit: Callable[..., RabbitMQBroker],
    rabbit: RabbitMQBroker,
    queue_name: str,
    policy: Callable[[str, int], object],
) -> None:
    await rabbit.declare([queue_name])  # no limit when it was made
    by_policy = make_rabbit(limit_by="policy")
    by_policy.use_limits({queue_name: QueueLimit(max_length=2)})
    async with by_policy:
        await by_policy.declare([queue_name])  # nothing to conflict with
        await policy(queue_name, 2)  # type: ignore[misc]
        taken = await _fill(by_policy, queue_name)
        assert 2 <= taken <= 3
        assert (await by_policy.stats(queue_name)).ready == taken
