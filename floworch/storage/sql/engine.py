"""Creating the async SQLAlchemy engine for one database, with per-database connection setup.

SQLite: every connection runs in WAL mode (readers never block the one writer),
``synchronous=NORMAL`` (durable across application crashes; a power loss may drop the last
transactions, never corrupt the file), ``foreign_keys=ON``, a busy timeout so writers queue
instead of failing, and case-sensitive ``LIKE`` (step-key prefixes). The driver's implicit
transaction handling is switched off and the adapter issues ``BEGIN`` itself: write
transactions start with ``BEGIN IMMEDIATE``, so two writers never both hold a read lock and then
deadlock upgrading it.

SQL Server without a user name in the URL authenticates with a Microsoft Entra token (see
:mod:`floworch.storage.sql.mssql_auth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from floworch.storage.sql.urls import sqlite_file

WRITE_OPTION = "floworch_write"
"""Execution option marking a connection that opens write transactions."""
AUTOCOMMIT_OPTION = "floworch_autocommit"
"""Execution option marking a SQLite connection whose statements each commit on their own."""


@dataclass(frozen=True, kw_only=True)
class SqlStoreOptions:
    """Connection settings of the SQL store.

    Attributes:
        pool_size: connections kept open (PostgreSQL/SQL Server). Concurrent claimers beyond
            ``pool_size + max_overflow`` wait for a free connection.
        max_overflow: extra connections opened under load.
        pool_timeout: how long to wait for a free connection before StorageUnavailableError.
        pool_recycle: reopen connections older than this (Azure SQL drops idle ones).
        pool_pre_ping: test each connection on checkout (one more round trip per transaction).
        sqlite_busy_timeout: how long a SQLite writer waits for the write lock.
        connect_timeout: how long to wait for a server to accept a connection.
        echo: log every statement (debugging).
    """

    pool_size: int = 10
    max_overflow: int = 20
    pool_timeout: timedelta = timedelta(seconds=30)
    pool_recycle: timedelta = timedelta(minutes=30)
    pool_pre_ping: bool = False
    sqlite_busy_timeout: timedelta = timedelta(seconds=30)
    connect_timeout: timedelta = timedelta(seconds=10)
    echo: bool = False


def create_engine_for(url: URL, options: SqlStoreOptions) -> AsyncEngine:
    """Creates the engine for ``url`` (an async-driver URL from :func:`to_async_url`)."""
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {
        "echo": options.echo,
        "pool_size": options.pool_size,
        "max_overflow": options.max_overflow,
        "pool_timeout": options.pool_timeout.total_seconds(),
        "pool_recycle": int(options.pool_recycle.total_seconds()),
        "pool_pre_ping": options.pool_pre_ping,
    }
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # A SQLite file has one writer at a time; a handful of readers is plenty.
        kwargs["pool_size"] = min(options.pool_size, 5)
        kwargs["max_overflow"] = min(options.max_overflow, 5)
        if url.database and url.database.startswith("file:"):
            connect_args["uri"] = True
    elif backend == "postgresql":
        connect_args["connect_timeout"] = max(1, int(options.connect_timeout.total_seconds()))
    elif backend == "mssql":
        connect_args["timeout"] = max(1, int(options.connect_timeout.total_seconds()))
    engine_url = url
    if backend == "mssql":
        from floworch.storage.sql.mssql_auth import strip_auth_parameters

        engine_url = strip_auth_parameters(url)
    engine = create_async_engine(engine_url, connect_args=connect_args, **kwargs)
    if backend == "sqlite":
        _install_sqlite_hooks(engine, options)
    elif backend == "mssql" and not url.username:
        from floworch.storage.sql.mssql_auth import install_entra_token_hook

        install_entra_token_hook(engine, url)
    return engine


def _install_sqlite_hooks(engine: AsyncEngine, options: SqlStoreOptions) -> None:
    busy_ms = int(options.sqlite_busy_timeout.total_seconds() * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The adapter issues BEGIN itself (see _on_begin); the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # PRAGMAs have no SQLAlchemy construct; these fixed strings are the one exception.
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA case_sensitive_like = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(AUTOCOMMIT_OPTION, False):
            return  # single statements: SQLite wraps each in its own transaction
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION, False) else "BEGIN")
