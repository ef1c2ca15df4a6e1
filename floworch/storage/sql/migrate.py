"""Applying and checking the schema's Alembic migrations from code (no ``alembic.ini``).

The migration scripts ship inside the package (``floworch/storage/sql/migrations``), so this
works from an installed wheel. Processes that start at the same time on one fresh database must
not both create the tables: on PostgreSQL a transaction-scoped advisory lock serialises them, on
SQLite the migration runs inside ``BEGIN IMMEDIATE`` (the file's write lock, taken before the
schema revision is even read), so the second process waits, then finds nothing to do.

Migrations run on a synchronous SQLAlchemy engine on a worker thread (Alembic is synchronous);
the coroutines here only wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from floworch.errors import SchemaVersionError
from floworch.storage.sql.engine import WRITE_OPTION
from floworch.storage.sql.errors import describe_url, translating

T = TypeVar("T")

SCRIPT_LOCATION = "floworch.storage.sql:migrations"
_PG_MIGRATION_LOCK = 0x666C6F77  # "flow": any constant shared by every floworch process


def migration_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (and at ``connection`` if given)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of floworch knows."""
    head = ScriptDirectory.from_config(migration_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships migrations
        raise SchemaVersionError("floworch ships no migrations: the installation is broken")
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _check_known(connection: Connection, where: str) -> str | None:
    current = _current(connection)
    if current is None:
        return None
    scripts = ScriptDirectory.from_config(migration_config())
    try:
        scripts.get_revision(current)
    except Exception as exc:
        raise SchemaVersionError(
            f"the {where} is at schema revision {current!r}, which this floworch version does "
            f"not know (its newest is {head_revision()!r}); it was probably migrated by a newer "
            "floworch: upgrade floworch, or point FLOWORCH_DB_URL at another database"
        ) from exc
    return current


def _upgrade(connection: Connection, where: str) -> None:
    if connection.dialect.name == "postgresql":
        # Held until this transaction ends; concurrent starters wait, then find nothing to do.
        connection.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
    _check_known(connection, where)
    command.upgrade(migration_config(connection), "head")


def _upgrade_sync(engine: Engine) -> None:
    where = describe_url(engine.url)
    if engine.dialect.name == "sqlite":
        # Nothing to do needs no write lock (and works on a read-only file); otherwise look
        # again under the lock, since another process may have migrated meanwhile.
        with engine.connect() as conn:
            if _check_known(conn, where) == head_revision():
                return
    # SQLite: WRITE_OPTION makes the transaction start with BEGIN IMMEDIATE (see engine.py).
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        _upgrade(conn, where)


def _read_sync(engine: Engine, read: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        return read(conn)


async def upgrade(engine: Engine) -> str:
    """Brings the database to the newest revision; returns it.

    Raises:
        SchemaVersionError: the database is at a revision this floworch does not know.
        StorageError: the database failed (unreachable, read-only...).
    """
    with translating(engine.url):
        await asyncio.to_thread(_upgrade_sync, engine)
    return head_revision()


async def current_revision(engine: Engine) -> str | None:
    """The database's revision (None for a database floworch never migrated)."""
    with translating(engine.url):
        return await asyncio.to_thread(_read_sync, engine, _current)


async def check_schema(engine: Engine) -> None:
    """Refuses a database that is not exactly at the newest revision (``migrate=False``).

    Raises:
        SchemaVersionError: it is behind (run ``floworch db upgrade``) or unknown.
    """
    where = describe_url(engine.url)
    with translating(engine.url):
        current = await asyncio.to_thread(
            _read_sync, engine, lambda conn: _check_known(conn, where)
        )
    head = head_revision()
    if current != head:
        raise SchemaVersionError(
            f"the {where} is at schema revision {current!r} but this floworch needs {head!r}: "
            "run `floworch db upgrade` (or open the store with migrations enabled)"
        )
