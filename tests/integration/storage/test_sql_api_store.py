"""The SQL store passes the control plane's store contract on SQLite and PostgreSQL, and its run
list never selects the trigger body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from floworch.storage.api_port import ApiStore
from floworch.storage.api_records import RunSearch
from floworch.storage.factory import open_store
from floworch.storage.sql import queries
from floworch.storage.sql.store import SqlStore
from floworch.testing.api_store_contract import ApiStoreContract


class TestSqliteApiStore(ApiStoreContract):
    @pytest.fixture
    async def store(self, sqlite_url: str) -> AsyncIterator[ApiStore]:
        store = await open_store(sqlite_url)
        assert isinstance(store, SqlStore) and isinstance(store, ApiStore)
        yield store
        await store.close()


@pytest.mark.postgres
class TestPostgresApiStore(ApiStoreContract):
    @pytest.fixture
    async def store(self, pg_store: SqlStore) -> AsyncIterator[ApiStore]:
        yield pg_store


@pytest.mark.parametrize(
    "dialect",
    [sqlite.dialect(), postgresql.dialect()],  # type: ignore[no-untyped-call]  # unannotated
)
def test_the_run_list_selects_no_trigger_body(dialect: Dialect) -> None:
    sql = str(queries.search_runs(RunSearch(text="x")).compile(dialect=dialect))
    assert "trigger_body" not in sql and "trigger_headers" not in sql
    assert "run_id" in sql
