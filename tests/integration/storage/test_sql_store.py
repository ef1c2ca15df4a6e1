"""The SQL store passes the shared store contract on SQLite, PostgreSQL and SQL Server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.storage.sql.store import SqlStore
from floworch.testing.store_contract import StoreContract

from .conftest import empty_tables


class TestSqliteStore(StoreContract):
    @pytest.fixture
    async def store(self, sqlite_url: str) -> AsyncIterator[Store]:
        store = await open_store(sqlite_url)
        yield store
        await store.close()


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    @pytest.fixture
    async def store(self, pg_store: SqlStore) -> AsyncIterator[Store]:
        yield pg_store


@pytest.mark.mssql
class TestSqlServerStore(StoreContract):
    @pytest.fixture
    async def store(self, mssql_url: str) -> AsyncIterator[Store]:
        store = await open_store(mssql_url)
        assert isinstance(store, SqlStore)
        await empty_tables(store)
        yield store
        await store.close()
