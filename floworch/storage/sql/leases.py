"""Host leases on SQL (see :mod:`floworch.storage.leases`): insert the row once, or take it over
with a conditional update, in one short write transaction."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, update

from floworch.storage.sql.compiled import adhoc
from floworch.storage.sql.database import SqlConnection
from floworch.storage.sql.errors import translating
from floworch.storage.sql.lease_schema import host_leases
from floworch.storage.sql.writes import insert_once


class SqlLeasesMixin:
    """:class:`~floworch.storage.leases.HostLeases` over the SQL store's connections."""

    def _write(self) -> AbstractAsyncContextManager[SqlConnection]:
        raise NotImplementedError  # provided by SqlStore: a connection in a write transaction

    @property
    def url(self) -> Any:
        raise NotImplementedError  # provided by SqlStore

    async def acquire_lease(self, name: str, owner: str, *, until: datetime, now: datetime) -> bool:
        row = {"lease_name": name, "owner": owner, "expires_at": until}
        async with self._write() as conn:
            with translating(self.url):
                if await insert_once(conn, host_leases, [row]):
                    return True
                # Held already: renew our own lease, or take over one that lapsed. The row
                # count decides, so two hosts taking over at once cannot both win.
                taken = await conn.execute(
                    adhoc(
                        update(host_leases)
                        .where(host_leases.c.lease_name == name)
                        .where(or_(host_leases.c.owner == owner, host_leases.c.expires_at < now))
                        .values(owner=owner, expires_at=until)
                    )
                )
                return taken.rowcount == 1

    async def release_lease(self, name: str, owner: str) -> None:
        async with self._write() as conn:
            with translating(self.url):
                await conn.execute(
                    adhoc(
                        delete(host_leases)
                        .where(host_leases.c.lease_name == name)
                        .where(host_leases.c.owner == owner)
                    )
                )


__all__ = ["SqlLeasesMixin"]
