"""Fixtures for the SQL store tests: a SQLite file per test, a PostgreSQL schema per session.

PostgreSQL runs on 127.0.0.1:5432 (user postgres, trust auth, database ``test``). When it is not
reachable, tests that need it skip, unless ``CI=true``: then they fail, so a broken CI service
never passes silently. SQL Server tests run only when ``FLOWORCH_TEST_MSSQL_URL`` is set.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from floworch.model.statuses import RunStatus
from floworch.storage.records import RunRecord
from floworch.storage.sql import migrate
from floworch.storage.sql.schema import metadata
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import to_driver_url

PG_SERVER_URL = os.environ.get(
    "FLOWORCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_unreachable_reason() -> str | None:
    engine = create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except Exception as exc:
        return f"PostgreSQL at {make_url(PG_SERVER_URL).host} is not reachable: {exc}"
    finally:
        engine.dispose()


def require_postgres() -> None:
    """Skips the calling test when PostgreSQL is absent locally; fails it when CI=true."""
    reason = _pg_unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


def schema_url(schema: str) -> str:
    """The test database URL with ``search_path`` set to ``schema``."""
    url = make_url(PG_SERVER_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_schema_factory() -> Iterator[object]:
    """Creates fresh PostgreSQL schemas on demand; drops every one at the end of the session."""
    require_postgres()
    engine = create_engine(PG_SERVER_URL)
    created: list[str] = []

    def make(prefix: str = "floworch_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with engine.begin() as conn:
            conn.execute(CreateSchema(name))
        created.append(name)
        return schema_url(name)

    yield make
    with engine.begin() as conn:
        for name in created:
            conn.execute(DropSchema(name, cascade=True))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_migrated_url(pg_schema_factory: object) -> str:
    """One migrated schema shared by the session's contract tests (emptied before each test)."""
    url: str = pg_schema_factory()  # type: ignore[operator]

    async def up() -> None:
        store = SqlStore.from_url(to_driver_url(url))
        try:
            await migrate.upgrade(store.engine)
        finally:
            await store.close()

    asyncio.run(up())
    return url


async def empty_tables(store: SqlStore) -> None:
    """Deletes every row (children first) so each test starts from an empty store."""
    with store.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture
async def pg_store(pg_migrated_url: str) -> AsyncIterator[SqlStore]:
    """An empty SQL store on PostgreSQL."""
    store = SqlStore.from_url(to_driver_url(pg_migrated_url))
    await empty_tables(store)
    yield store
    await store.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL in the test's temporary directory (not created yet)."""
    return f"sqlite:///{tmp_path / 'floworch.db'}"


@pytest.fixture
def mssql_url() -> str:
    """The SQL Server URL from FLOWORCH_TEST_MSSQL_URL; the test skips without it."""
    url = os.environ.get("FLOWORCH_TEST_MSSQL_URL")
    if not url:
        pytest.skip("FLOWORCH_TEST_MSSQL_URL is not set")
    return url


def running_run(
    run_id: str, *, remaining: int = 1, created_at: datetime = datetime(2026, 1, 1, 12, tzinfo=UTC)
) -> RunRecord:
    """A Running run of flow ``f`` (manual trigger, no body) for store-level tests."""
    return RunRecord(
        run_id=run_id,
        flow_id="f",
        flow_version="1",
        trigger_key="manual",
        status=RunStatus.RUNNING,
        trigger_body=None,
        trigger_headers={},
        created_at=created_at,
        remaining=remaining,
    )
