"""Concurrency slots on every result backend: taken up to the limit, renewed, given back, and
freed by their lease when the run that held them stopped renewing (a killed worker)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aioack.results import ResultBackend
from aioack.results.sqlite import SQLiteResultBackend
from tests.results.conftest import BackendFactory
from tests.support import wait_until


async def test_slots_are_taken_up_to_the_limit_and_a_release_frees_one(
    backend: ResultBackend,
) -> None:
    assert await backend.acquire_slot("k", 2, "a", 30)
    assert await backend.acquire_slot("k", 2, "b", 30)
    assert not await backend.acquire_slot("k", 2, "c", 30)
    assert await backend.acquire_slot("other", 2, "c", 30)  # keys are independent
    await backend.release_slot("k", "a")
    assert await backend.acquire_slot("k", 2, "c", 30)
    assert not await backend.acquire_slot("k", 2, "d", 30)


async def test_an_owner_holding_a_slot_takes_it_again_without_a_second_one(
    backend: ResultBackend,
) -> None:
    assert await backend.acquire_slot("k", 1, "a", 30)
    assert await backend.acquire_slot("k", 1, "a", 30)
    assert not await backend.acquire_slot("k", 1, "b", 30)


async def test_a_release_by_an_owner_without_a_slot_frees_nothing(backend: ResultBackend) -> None:
    assert await backend.acquire_slot("k", 1, "a", 30)
    await backend.release_slot("k", "stranger")
    await backend.release_slot("never-used", "a")
    assert not await backend.acquire_slot("k", 1, "b", 30)


async def test_a_slot_whose_lease_ran_out_is_free_and_its_owner_lost_it(
    backend: ResultBackend,
) -> None:
    assert await backend.acquire_slot("k", 1, "dead", 0.2)
    assert not await backend.acquire_slot("k", 1, "b", 30)

    async def taken() -> bool:
        return await backend.acquire_slot("k", 1, "b", 30)

    await wait_until(taken, timeout=5, message="the lapsed slot to be free")
    assert not await backend.renew_slot("k", "dead", 30)  # taken over: lost
    assert await backend.renew_slot("k", "b", 30)


async def test_renewing_keeps_the_slot_past_its_first_lease(backend: ResultBackend) -> None:
    assert await backend.acquire_slot("k", 1, "a", 0.3)
    for _ in range(6):  # 0.6 s: twice the lease
        await asyncio.sleep(0.1)
        assert await backend.renew_slot("k", "a", 0.3)
        assert not await backend.acquire_slot("k", 1, "b", 0.3)


async def test_a_lapsed_slot_nobody_took_is_still_its_owners_to_renew(
    backend: ResultBackend,
) -> None:
    assert await backend.acquire_slot("k", 1, "a", 0.1)
    await asyncio.sleep(0.25)
    assert await backend.renew_slot("k", "a", 30)
    assert not await backend.acquire_slot("k", 1, "b", 30)


async def test_renewing_a_slot_never_taken_fails(backend: ResultBackend) -> None:
    assert not await backend.renew_slot("k", "a", 30)
    assert await backend.acquire_slot("k", 1, "b", 30)  # and it took nothing


async def test_two_clients_of_one_store_share_the_slots(
    make_backend: BackendFactory, results_kind: str
) -> None:
    first = make_backend()
    if results_kind == "memory":
        second = first  # one process's only
    elif results_kind == "redis":
        from aioack.results.redis import RedisResultBackend

        assert isinstance(first, RedisResultBackend)
        second = RedisResultBackend(key_prefix=first.prefix)
    else:
        second = make_backend()  # the same file, a second connection
    try:
        assert await first.acquire_slot("k", 1, "a", 30)
        assert not await second.acquire_slot("k", 1, "b", 30)
        await first.release_slot("k", "a")
        assert await second.acquire_slot("k", 1, "b", 30)
    finally:
        if second is not first and results_kind == "redis":
            await second.aclose()


async def test_sqlite_an_unrelated_keys_acquire_leaves_a_lapsed_untaken_slot_renewable(
    tmp_path: Path,
) -> None:
    backend = SQLiteResultBackend(f"sqlite:///{tmp_path}/slots.db")
    try:
        assert await backend.acquire_slot("k", 1, "a", 0.1)
        await asyncio.sleep(0.25)  # a's renewals were late (a stalled loop, a locked file)
        assert await backend.acquire_slot("other-key", 1, "c", 30)
        assert await backend.renew_slot("k", "a", 30)  # nobody took k's slot: still a's
    finally:
        await backend.aclose()
