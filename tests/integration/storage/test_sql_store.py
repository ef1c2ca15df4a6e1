"""The SQL store passes the shared store contract on SQLite, PostgreSQL and SQL Server, and on
the SQL Server code path (SQLAlchemy execution, a thread per connection) run against SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.storage.sql import migrate
from floworch.storage.sql.engine import (
    AUTOCOMMIT_OPTION,
    WRITE_OPTION,
    SqlStoreOptions,
    create_sync_engine,
)
from floworch.storage.sql.mssql_db import LaneDatabase, LaneOptions
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import to_driver_url
from floworch.testing.store_contract import StoreContract

from .conftest import empty_tables


class TestSqliteStore(StoreContract):
    @pytest.fixture
    async def store(self, sqlite_url: str) -> AsyncIterator[Store]:
        store = await open_store(sqlite_url)
        yield store
        await store.close()


class TestLanesOnSqlite(StoreContract):
    """What SQL Server runs on (LaneDatabase), exercised without a SQL Server."""

    @pytest.fixture
    async def store(self, sqlite_url: str) -> AsyncIterator[Store]:
        url = to_driver_url(sqlite_url)
        options = SqlStoreOptions()
        lanes = LaneDatabase(
            create_sync_engine(url, options),
            url,
            size=4,
            timeout=30,
            options=LaneOptions(
                transaction={WRITE_OPTION: True}, autocommit={AUTOCOMMIT_OPTION: True}
            ),
        )
        store = SqlStore(lanes, url, options)
        await migrate.upgrade(store.engine)
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
