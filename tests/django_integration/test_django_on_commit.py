"""Publish on commit, counted on the broker: the messages in a queue no worker consumes.

A view saves a row and calls ``delay_on_commit``: one message after the
commit, none while the transaction is open, none after a rollback.
"""

from __future__ import annotations

import asyncio

import pytest
from django.db import transaction
from django.test import Client

from aioack import InvalidArguments
from aioack.brokers import broker_from_url

pytestmark = pytest.mark.usefixtures("django_project")


def published() -> int:
    """Messages waiting in the on-commit queue (ready or delayed), read from Redis."""
    from django.conf import settings

    from tests.django_project.shop.tasks import COMMITS_QUEUE

    async def count() -> int:
        async with broker_from_url(settings.AIOACK["BROKER_URL"]) as broker:
            stats = await broker.stats(COMMITS_QUEUE)
            return stats.ready + stats.delayed

    return asyncio.run(count())


def test_a_committed_view_publishes_once_after_the_commit() -> None:
    before = published()

    response = Client().post("/widgets", {"name": "committed"})

    assert response.status_code == 200, response.content
    assert published() == before + 1


def test_a_rolled_back_view_publishes_nothing() -> None:
    from tests.django_project.shop.models import Widget

    before = published()

    response = Client().post("/widgets", {"name": "rolled-back", "fail": "1"})

    assert response.status_code == 409
    assert not Widget.objects.filter(name="rolled-back").exists()
    assert published() == before


def test_nothing_is_published_while_the_transaction_is_open() -> None:
    from tests.django_project.shop.tasks import widget_created

    before = published()
    with transaction.atomic():
        widget_created.delay_on_commit(1)
        assert published() == before
    assert published() == before + 1


def test_a_rolled_back_savepoint_drops_its_publish_only() -> None:
    from tests.django_project.shop.tasks import widget_created

    before = published()
    with transaction.atomic():
        widget_created.delay_on_commit(1)
        with pytest.raises(RuntimeError), transaction.atomic():
            widget_created.delay_on_commit(2)
            raise RuntimeError("inner block rolled back")
    assert published() == before + 1


def test_bad_arguments_fail_at_the_call_not_at_the_commit() -> None:
    from tests.django_project.shop.tasks import widget_created

    before = published()
    with transaction.atomic():
        with pytest.raises(InvalidArguments):
            widget_created.delay_on_commit("1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="unknown option"):
            widget_created.apply_async_on_commit((1,), countdwn=5)
    assert published() == before


def test_apply_async_on_commit_passes_its_options() -> None:
    from tests.django_project.shop.tasks import widget_created

    before = published()
    with transaction.atomic():
        widget_created.apply_async_on_commit((1,), countdown=600)
    assert published() == before + 1  # held as delayed, counted


def test_a_publish_failing_at_commit_is_logged_and_the_others_still_publish(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.django_project.shop.tasks import widget_created

    real, attempts, other = widget_created.apply_async_sync, [], []

    def first_fails(
        args: tuple[object, ...], kwargs: dict[str, object], **options: object
    ) -> object:
        attempts.append(args)
        if len(attempts) == 1:
            raise ConnectionError("broker down")  # the first publish meets an outage
        return real(args, kwargs, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(widget_created, "apply_async_sync", first_fails)
    before = published()
    with transaction.atomic():  # raises nothing: the data is committed
        for n in range(3):
            widget_created.delay_on_commit(n)
        transaction.on_commit(lambda: other.append("another library's callback"))
    assert len(attempts) == 3 and other == ["another library's callback"]
    assert published() == before + 2  # the two that met no outage
    failed = [r for r in caplog.records if getattr(r, "event", "") == "publish_on_commit_failed"]
    assert len(failed) == 1 and "broker down" in failed[0].getMessage()
