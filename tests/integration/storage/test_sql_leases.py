"""The SQL store passes the host-lease contract on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from floworch.storage.factory import open_store
from floworch.storage.leases import HostLeases
from floworch.storage.sql.store import SqlStore
from floworch.testing.lease_contract import LeaseContract


class TestSqliteLeases(LeaseContract):
    @pytest.fixture
    async def leases(self, sqlite_url: str) -> AsyncIterator[HostLeases]:
        store = await open_store(sqlite_url)
        assert isinstance(store, HostLeases)
        yield store
        await store.close()


@pytest.mark.postgres
class TestPostgresLeases(LeaseContract):
    @pytest.fixture
    async def leases(self, pg_store: SqlStore) -> AsyncIterator[HostLeases]:
        yield pg_store
