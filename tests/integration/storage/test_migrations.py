"""The migrations build exactly the declared schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, Table, inspect, update
from sqlalchemy.engine import Connection

from floworch.errors import SchemaVersionError
from floworch.storage.factory import open_store
from floworch.storage.sql import migrate
from floworch.storage.sql.schema import metadata
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import to_driver_url

alembic_version = Table("alembic_version", MetaData(), Column("version_num", String(32)))


def _diff(connection: Connection) -> list[Any]:
    dialect = connection.dialect.name

    def for_this_dialect(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
        # Alembic's comparison ignores Index.ddl_if: leave out indexes meant for another dialect.
        only = getattr(obj, "_ddl_if", None) if type_ == "index" and not reflected else None
        return only is None or only.dialect in (None, dialect)

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": for_this_dialect}
    )
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _migrate_and_diff(url: str) -> None:
    store = SqlStore.from_url(to_driver_url(url))
    try:
        assert await migrate.current_revision(store.engine) is None
        assert await migrate.upgrade(store.engine) == migrate.head_revision()
        assert await migrate.current_revision(store.engine) == migrate.head_revision()
        with store.engine.connect() as conn:
            assert _diff(conn) == []
            tables = _tables(conn)
        assert {t.name for t in metadata.sorted_tables} <= tables
        # Upgrading again is a no-op.
        assert await migrate.upgrade(store.engine) == migrate.head_revision()
    finally:
        await store.close()


async def test_sqlite_migrations_match_the_metadata(sqlite_url: str) -> None:
    await _migrate_and_diff(sqlite_url)


@pytest.mark.postgres
async def test_postgres_migrations_match_the_metadata(pg_schema_factory: Callable[[], str]) -> None:
    await _migrate_and_diff(pg_schema_factory())


async def _set_revision(url: str, revision: str) -> None:
    store = SqlStore.from_url(to_driver_url(url))
    try:
        with store.engine.begin() as conn:
            conn.execute(update(alembic_version).values(version_num=revision))
    finally:
        await store.close()


async def test_a_database_at_an_unknown_revision_is_refused(sqlite_url: str) -> None:
    store = await open_store(sqlite_url)
    await store.close()
    await _set_revision(sqlite_url, "9999_from_the_future")
    for migrate_flag in (True, False):
        with pytest.raises(SchemaVersionError, match=r"9999_from_the_future.*upgrade floworch"):
            await open_store(sqlite_url, migrate=migrate_flag)


async def test_migrate_false_refuses_an_unmigrated_database(sqlite_url: str) -> None:
    with pytest.raises(SchemaVersionError, match="floworch db upgrade"):
        await open_store(sqlite_url, migrate=False)
    store = await open_store(sqlite_url)
    await store.close()
    store = await open_store(sqlite_url, migrate=False)
    await store.close()


@pytest.mark.postgres
async def test_postgres_unknown_revision_is_refused(pg_schema_factory: Callable[[], str]) -> None:
    url = pg_schema_factory()
    store = await open_store(url)
    await store.close()
    await _set_revision(url, "abc_unknown")
    with pytest.raises(SchemaVersionError, match="abc_unknown"):
        await open_store(url)
