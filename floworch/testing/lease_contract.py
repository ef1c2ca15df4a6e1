"""The shared contract suite of host leases (:class:`floworch.storage.leases.HostLeases`).

Subclass :class:`LeaseContract` and provide an async ``leases`` fixture yielding a fresh store::

    class TestMyStore(LeaseContract):
        @pytest.fixture
        async def leases(self):
            store = await open_my_store()
            yield store
            await store.close()
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from floworch.storage.leases import HostLeases

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class LeaseContract:
    """Behaviour every store's host leases must show."""

    async def test_a_free_lease_is_taken_and_then_refused_to_others(
        self, leases: HostLeases
    ) -> None:
        assert await leases.acquire_lease("pass", "a", until=T0 + MINUTE, now=T0)
        assert not await leases.acquire_lease("pass", "b", until=T0 + 2 * MINUTE, now=T0)
        assert not await leases.acquire_lease("pass", "b", until=T0 + 2 * MINUTE, now=T0 + MINUTE)

    async def test_the_holder_renews_its_lease(self, leases: HostLeases) -> None:
        assert await leases.acquire_lease("pass", "a", until=T0 + MINUTE, now=T0)
        assert await leases.acquire_lease("pass", "a", until=T0 + 3 * MINUTE, now=T0 + MINUTE)
        # The renewal counts: at T0 + 2 min the first lease would have lapsed, this one has not.
        later = T0 + 2 * MINUTE
        assert not await leases.acquire_lease("pass", "b", until=later + MINUTE, now=later)

    async def test_a_lapsed_lease_is_taken_over(self, leases: HostLeases) -> None:
        assert await leases.acquire_lease("pass", "a", until=T0 + MINUTE, now=T0)
        later = T0 + MINUTE + timedelta(seconds=1)
        assert await leases.acquire_lease("pass", "b", until=later + MINUTE, now=later)
        assert not await leases.acquire_lease("pass", "a", until=later + MINUTE, now=later)

    async def test_a_released_lease_is_free_at_once(self, leases: HostLeases) -> None:
        assert await leases.acquire_lease("pass", "a", until=T0 + MINUTE, now=T0)
        await leases.release_lease("pass", "b")  # not the holder: nothing changes
        assert not await leases.acquire_lease("pass", "b", until=T0 + MINUTE, now=T0)
        await leases.release_lease("pass", "a")
        assert await leases.acquire_lease("pass", "b", until=T0 + MINUTE, now=T0)
        await leases.release_lease("never-taken", "a")

    async def test_leases_of_different_names_are_independent(self, leases: HostLeases) -> None:
        assert await leases.acquire_lease("one", "a", until=T0 + MINUTE, now=T0)
        assert await leases.acquire_lease("two", "b", until=T0 + MINUTE, now=T0)

    async def test_concurrent_takers_of_a_free_lease_get_one_winner(
        self, leases: HostLeases
    ) -> None:
        results = await asyncio.gather(
            *(
                leases.acquire_lease("race", f"host-{i}", until=T0 + MINUTE, now=T0)
                for i in range(8)
            )
        )
        assert results.count(True) == 1

    async def test_concurrent_takers_of_a_lapsed_lease_get_one_winner(
        self, leases: HostLeases
    ) -> None:
        assert await leases.acquire_lease("race", "old", until=T0, now=T0 - MINUTE)
        later = T0 + MINUTE
        results = await asyncio.gather(
            *(
                leases.acquire_lease("race", f"host-{i}", until=later + MINUTE, now=later)
                for i in range(8)
            )
        )
        assert results.count(True) == 1
