"""Opening a database: the store's connections, and a SQLAlchemy engine for migrations and tools.

The store runs its statements on the drivers' own connections (see
:mod:`floworch.storage.sql.database`): SQLite inline on the event loop, PostgreSQL on psycopg's
asyncio connections, SQL Server on SQLAlchemy's pyodbc dialect with a thread per connection.
Migrations (Alembic) and tools use an ordinary synchronous SQLAlchemy :class:`Engine` on the same
URL, which :func:`create_sync_engine` builds with the same SQLite settings.

SQLite settings: ``synchronous`` (``NORMAL`` by default: a commit survives a crash of the
process, and a power loss may drop the last transactions but never corrupts the file; ``FULL``
fsyncs the WAL at every commit, so a committed transaction survives a power loss too),
``foreign_keys=ON``, case-sensitive ``LIKE``. Write transactions start with ``BEGIN IMMEDIATE``.

SQL Server without a user name in the URL authenticates with a Microsoft Entra token (see
:mod:`floworch.storage.sql.mssql_auth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

from floworch.errors import StorageError
from floworch.storage.sql.database import Database
from floworch.storage.sql.sqlite_db import SYNCHRONOUS_MODES
from floworch.storage.sql.urls import sqlite_file

WRITE_OPTION = "floworch_write"
"""Execution option marking a SQLAlchemy connection that opens write transactions (SQLite)."""
AUTOCOMMIT_OPTION = "floworch_autocommit"
"""Execution option marking a SQLite connection whose statements each commit on their own."""
SYNCHRONOUS_PARAMETER = "synchronous"
"""The URL query parameter choosing SQLite's durability (``?synchronous=full``)."""


@dataclass(frozen=True, kw_only=True)
class SqlStoreOptions:
    """Connection settings of the SQL store.

    Attributes:
        pool_size: connections kept open (PostgreSQL/SQL Server). Concurrent claimers beyond
            ``pool_size + max_overflow`` wait for a free connection.
        max_overflow: extra connections opened under load.
        pool_timeout: how long to wait for a free connection before StorageUnavailableError.
        pool_recycle: reopen connections older than this (Azure SQL drops idle ones).
        pool_pre_ping: test each connection before reuse (one more round trip per use).
        sqlite_busy_timeout: how long a SQLite writer waits for another process's write lock.
        sqlite_synchronous: SQLite durability, ``normal`` (default) or ``full`` (fsync at every
            commit); a ``?synchronous=`` parameter in the URL takes precedence.
        connect_timeout: how long to wait for a server to accept a connection.
        echo: log every statement of the migration engine (debugging).
    """

    pool_size: int = 10
    max_overflow: int = 20
    pool_timeout: timedelta = timedelta(seconds=30)
    pool_recycle: timedelta = timedelta(minutes=30)
    pool_pre_ping: bool = False
    sqlite_busy_timeout: timedelta = timedelta(seconds=30)
    sqlite_synchronous: str = "normal"
    connect_timeout: timedelta = timedelta(seconds=10)
    echo: bool = False


def split_synchronous(url: URL, options: SqlStoreOptions) -> tuple[URL, str]:
    """The URL without floworch's ``synchronous`` parameter, and the SQLite mode to use.

    Raises:
        StorageError: the mode is not one SQLite knows.
    """
    value = url.query.get(SYNCHRONOUS_PARAMETER, options.sqlite_synchronous)
    mode = (value if isinstance(value, str) else value[-1]).strip().lower()
    if mode not in SYNCHRONOUS_MODES:
        raise StorageError(
            f"unknown SQLite synchronous mode {mode!r} in the database URL or options; "
            f"use one of {', '.join(SYNCHRONOUS_MODES)} (e.g. ?synchronous=full)"
        )
    return url.difference_update_query([SYNCHRONOUS_PARAMETER]), mode


def create_database(url: URL, options: SqlStoreOptions, *, read_only: bool) -> Database:
    """The store's connections for ``url`` (a driver URL from :func:`to_driver_url`); no I/O."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        from floworch.storage.sql.sqlite_db import SqliteDatabase

        plain, mode = split_synchronous(url, options)
        path = sqlite_file(plain)
        if path is not None and not read_only and not (plain.database or "").startswith("file:"):
            path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(
            plain,
            busy_timeout=options.sqlite_busy_timeout.total_seconds(),
            synchronous=mode,
            read_only=read_only,
        )
    if backend == "postgresql":
        from floworch.storage.sql.postgres_db import PostgresDatabase

        return PostgresDatabase(
            url,
            size=options.pool_size + options.max_overflow,
            timeout=options.pool_timeout.total_seconds(),
            recycle=options.pool_recycle.total_seconds(),
            pre_ping=options.pool_pre_ping,
            connect_timeout=options.connect_timeout.total_seconds(),
            read_only=read_only,
        )
    from floworch.storage.sql.mssql_db import LaneDatabase

    return LaneDatabase(
        create_sync_engine(url, options),
        url,
        size=options.pool_size + options.max_overflow,
        timeout=options.pool_timeout.total_seconds(),
    )


def create_sync_engine(url: URL, options: SqlStoreOptions, *, pooled: bool = True) -> Engine:
    """A synchronous SQLAlchemy engine on ``url`` with floworch's connection settings.

    SQLite connections of this engine wait up to the busy timeout inside SQLite (they run on a
    worker thread, never on the event loop) and begin write transactions with ``BEGIN
    IMMEDIATE`` when the connection carries :data:`WRITE_OPTION`.
    """
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"echo": options.echo}
    connect_args: dict[str, Any] = {}
    engine_url = url
    if pooled and backend != "sqlite":
        kwargs.update(
            pool_size=options.pool_size,
            max_overflow=options.max_overflow,
            pool_timeout=options.pool_timeout.total_seconds(),
            pool_recycle=int(options.pool_recycle.total_seconds()),
            pool_pre_ping=options.pool_pre_ping,
        )
    else:
        kwargs["poolclass"] = NullPool
    mode = "normal"
    if backend == "sqlite":
        engine_url, mode = split_synchronous(url, options)
        connect_args["timeout"] = options.sqlite_busy_timeout.total_seconds()
    elif backend == "postgresql":
        connect_args["connect_timeout"] = max(1, int(options.connect_timeout.total_seconds()))
    elif backend == "mssql":
        from floworch.storage.sql.mssql_auth import strip_auth_parameters

        engine_url = strip_auth_parameters(url)
        connect_args["timeout"] = max(1, int(options.connect_timeout.total_seconds()))
    engine = create_engine(engine_url, connect_args=connect_args, **kwargs)
    if backend == "sqlite":
        _install_sqlite_hooks(engine, options, mode)
    elif backend == "mssql" and not url.username:
        from floworch.storage.sql.mssql_auth import install_entra_token_hook

        install_entra_token_hook(engine, url)
    return engine


def _install_sqlite_hooks(engine: Engine, options: SqlStoreOptions, synchronous: str) -> None:
    busy_ms = int(options.sqlite_busy_timeout.total_seconds() * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The adapter issues BEGIN itself (see _on_begin); the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # PRAGMAs have no SQLAlchemy construct; these fixed strings are the one exception.
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA case_sensitive_like = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(AUTOCOMMIT_OPTION, False):
            return  # single statements: SQLite wraps each in its own transaction
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION, False) else "BEGIN")
