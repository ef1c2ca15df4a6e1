"""Host leases: "at most one of us does this now", kept in the store every host shares.

A Function App scales out to many instances and several apps (slots, blue/green deployments)
may share one database; the background pass (reconciler, cron chain seeding) should run in one
of them at a time. A host calls :meth:`HostLeases.acquire_lease` before each pass: it gets the
lease when nobody holds it, when it already holds it (a renewal), or when the holder's lease
lapsed (the holder died or stalled). Times are the caller's clock, as for step leases.

:class:`MemoryLeases` is the in-memory implementation (a base of
:class:`~floworch.storage.memory.MemoryStore`); the SQL store implements the same methods
(``floworch/storage/sql/leases.py``). The shared suite is ``floworch.testing.lease_contract``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class HostLeases(Protocol):
    """The lease methods a store offers hosts."""

    async def acquire_lease(self, name: str, owner: str, *, until: datetime, now: datetime) -> bool:
        """Takes or renews lease ``name`` for ``owner`` until ``until``.

        Returns True when ``owner`` holds the lease now: it was free, already ``owner``'s, or its
        holder's lease expired before ``now``. False when another owner holds a live lease.
        Concurrent callers for a free lease get exactly one True.
        """

    async def release_lease(self, name: str, owner: str) -> None:
        """Gives lease ``name`` up if ``owner`` holds it (others may take it at once)."""


@dataclass
class _Lease:
    owner: str
    expires_at: datetime


class MemoryLeases:
    """:class:`HostLeases` in memory (one process; the memory store's event loop)."""

    _host_leases: dict[str, _Lease]

    async def acquire_lease(self, name: str, owner: str, *, until: datetime, now: datetime) -> bool:
        held = self._host_leases.get(name)
        if held is not None and held.owner != owner and held.expires_at >= now:
            return False
        self._host_leases[name] = _Lease(owner, until)
        return True

    async def release_lease(self, name: str, owner: str) -> None:
        held = self._host_leases.get(name)
        if held is not None and held.owner == owner:
            del self._host_leases[name]


__all__ = ["HostLeases", "MemoryLeases"]
