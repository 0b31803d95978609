"""Workflows: ``chain``, ``group`` and ``chord`` of task signatures (docs/workflows.md).

The producer publishes only the first message(s); what comes next travels
inside them (``Message.then``), and the worker that runs a step publishes
the next one before it acks its own delivery. So a workflow outlives its
producer, and a worker killed at any step leaves a redelivery that runs the
step again and publishes the next (a duplicate at worst, of the same task
id: step ids are derived from the workflow id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from aioack.errors import ConfigurationError, ResultTimeout
from aioack.message import (
    MAX_CHAIN_STEPS,
    MAX_CHORD_SIZE,
    ChordLink,
    Continuation,
    Message,
    Step,
    callback_id,
    new_task_id,
    step_id,
    summarize,
)
from aioack.task import AsyncResult, Producer, Signature

R = TypeVar("R")


class Chain(Generic[R]):
    """Steps run one after another, each receiving the previous result first."""

    def __init__(self, *steps: Signature[Any]) -> None:
        self.steps = _signatures(steps, "chain", at_most=MAX_CHAIN_STEPS)
        # Checked here, at the call site: the first step gets no result, the others do.
        self._wire = [s.step(receives=i > 0) for i, s in enumerate(self.steps)]

    async def apply_async(self, *, workflow_id: str | None = None) -> AsyncResult[R]:
        """Publish the first step; return the handle of the last (the chain's result).

        ``workflow_id`` (default: a new one) names the chain: step ``i``'s task
        id is ``{workflow_id}-{i}``. A failed step stops the chain and its
        error is the result's (``get()`` raises ``TaskFailed``).

        Raises:
            ConfigurationError: the App has no result backend.
            ValueError: a bad ``workflow_id``.
            MessageTooLarge, QueueFull, BrokerUnavailable, PublishFailed: as
                ``apply_async()``; nothing of the chain runs then.
        """
        producer = _producer(self.steps)
        workflow = workflow_id or new_task_id()
        first, *rest = self._wire
        then = _continuation(workflow=workflow, rest=rest)
        await _publish(producer, first, step_id(workflow, 0), then)
        last = self.steps[-1].task
        return AsyncResult(then.result_id, last.name, last.options.queue, producer)

    async def delay(self) -> AsyncResult[R]:
        """``apply_async()`` with a new workflow id."""
        return await self.apply_async()

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.steps))})"


class Group:
    """Members run side by side; their results come back as a list, in order."""

    def __init__(self, *members: Signature[Any] | Iterable[Signature[Any]]) -> None:
        flat: list[Signature[Any]] = []
        for member in members:
            flat.extend([member] if isinstance(member, Signature) else member)
        self.members = _signatures(flat, "group", at_most=MAX_CHORD_SIZE)
        self._wire = [m.step(receives=False) for m in self.members]

    async def apply_async(self, *, workflow_id: str | None = None) -> GroupResult:
        """Publish every member (member ``i``'s task id is ``{workflow_id}-{i}``).

        Raises:
            ConfigurationError, ValueError, MessageTooLarge, QueueFull,
            BrokerUnavailable, PublishFailed: as ``Chain.apply_async``. A
            publish that fails leaves the members before it published: call
            again with the same ``workflow_id`` to publish the rest (the
            members already published are published again, with the same ids).
        """
        producer = _producer(self.members)
        workflow = workflow_id or new_task_id()
        _continuation(workflow=workflow)  # checks the id before anything is published
        results: list[AsyncResult[Any]] = []
        for index, (member, wire) in enumerate(zip(self.members, self._wire, strict=True)):
            task_id = step_id(workflow, index)
            await _publish(producer, wire, task_id, None)
            results.append(AsyncResult(task_id, member.task.name, wire.queue, producer))
        return GroupResult(workflow, results)

    async def delay(self) -> GroupResult:
        """``apply_async()`` with a new workflow id."""
        return await self.apply_async()

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.members))})"


class Chord(Generic[R]):
    """A group whose results, once every member succeeded, go to one callback."""

    def __init__(self, header: Group | Iterable[Signature[Any]], body: Signature[R]) -> None:
        self.header = header if isinstance(header, Group) else Group(header)
        if not isinstance(body, Signature):
            raise TypeError(f"a chord's callback is a signature (task.s(...)), not {body!r}")
        self.body = body
        _producer([*self.header.members, body])  # one App for all
        # The callback receives the list of the members' results first.
        self._callback = body.step(receives=True)

    async def apply_async(self, *, workflow_id: str | None = None) -> AsyncResult[R]:
        """Publish the members; return the handle of the callback (the chord's result).

        The callback (task id ``{workflow_id}-callback``) is published by the
        worker that completes the last member, and runs once. A member that
        fails for good fails the chord's result, naming the member and why.

        Raises:
            As ``Group.apply_async``.
        """
        members = self.header.members
        producer = _producer(members)
        workflow = workflow_id or new_task_id()
        size = len(members)
        for index, wire in enumerate(self.header._wire):
            link = ChordLink(member=index, size=size, callback=self._callback)
            then = _continuation(workflow=workflow, chord=link)
            await _publish(producer, wire, step_id(workflow, index), then)
        callback = self.body.task
        return AsyncResult(callback_id(workflow), callback.name, callback.options.queue, producer)

    async def delay(self) -> AsyncResult[R]:
        """``apply_async()`` with a new workflow id."""
        return await self.apply_async()

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def chain(*steps: Signature[Any]) -> Chain[Any]:
    """``chain(a.s(1), b.s(), c.s())``: a(1), then b(a's result), then c(b's result)."""
    return Chain(*steps)


def group(*members: Signature[Any] | Iterable[Signature[Any]]) -> Group:
    """``group(add.s(i, i) for i in range(10))``: ten runs side by side."""
    return Group(*members)


def chord(header: Group | Iterable[Signature[Any]], body: Signature[R]) -> Chord[R]:
    """``chord(group(...), total.s())``: total(list of the members' results), once."""
    return Chord(header, body)


@dataclass(frozen=True, slots=True)
class GroupResult:
    """The handles of a group's members."""

    id: str
    results: list[AsyncResult[Any]] = field(default_factory=list)

    async def get(self, timeout: float | None = None) -> list[Any]:  # noqa: ASYNC109
        """Wait (without polling) for every member; their values, in order.

        Raises:
            TaskFailed: a member failed (the first, in order, that did).
            ResultTimeout: not all final within ``timeout`` seconds.
            ConfigurationError, BrokerUnavailable: as ``AsyncResult.get()``.
        """
        try:
            async with asyncio.timeout(timeout):
                # One at a time: the total wait is the slowest member's either way,
                # and one waiter at a time is easier on the backend.
                return [await result.get() for result in self.results]
        except TimeoutError:
            raise ResultTimeout(f"group {self.id}: not every member done in {timeout}s") from None

    def __len__(self) -> int:
        return len(self.results)


def _signatures(items: Iterable[Any], what: str, *, at_most: int) -> tuple[Signature[Any], ...]:
    found = tuple(items)
    if not found:
        raise ValueError(f"a {what} needs at least one signature")
    if len(found) > at_most:
        raise ValueError(f"a {what} holds at most {at_most} signatures, not {len(found)}")
    for item in found:
        if not isinstance(item, Signature):
            raise TypeError(
                f"a {what} takes signatures (task.s(...) or task.si(...)), not {item!r}"
            )
    return found


def _producer(signatures: Sequence[Signature[Any]]) -> Producer:
    """The one App every step belongs to; it must keep results."""
    apps = {id(s.task.app): s.task.app for s in signatures}
    if len(apps) > 1:
        raise ValueError("every task of a workflow must belong to one App")
    producer = next(iter(apps.values()))
    if producer.results is None:
        raise ConfigurationError(
            "workflows need a result backend (step results, chord counts, the "
            "workflow's result): App(results='sqlite://') or App(results='redis://...')"
        )
    return producer


def _continuation(
    *, workflow: str, rest: Sequence[Step] = (), chord: ChordLink | None = None
) -> Continuation:
    try:
        return Continuation(workflow=workflow, rest=list(rest), chord=chord)
    except ValidationError as exc:
        raise ValueError(f"workflow {workflow!r}: {summarize(exc)}") from exc


async def _publish(producer: Producer, step: Step, task_id: str, then: Continuation | None) -> None:
    message = Message(
        id=task_id,
        task=step.task,
        args=step.args,
        kwargs=step.kwargs,
        published_at=time.time(),
        then=then,
    )
    await producer.publish(message, step.queue)


__all__ = ["Chain", "Chord", "Group", "GroupResult", "chain", "chord", "group"]
