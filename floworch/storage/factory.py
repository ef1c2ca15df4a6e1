"""Opening a store from a URL: ``memory://`` or a SQLite, PostgreSQL or SQL Server database."""

from __future__ import annotations

from floworch.errors import StorageError
from floworch.storage.memory import MemoryStore
from floworch.storage.port import Store
from floworch.storage.sql import migrate as _migrate
from floworch.storage.sql.engine import SqlStoreOptions
from floworch.storage.sql.errors import translating
from floworch.storage.sql.sqlite_db import SqliteDatabase
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import is_memory_url, sqlite_file, to_driver_url


async def open_store(
    url: str | None = None,
    *,
    migrate: bool = True,
    options: SqlStoreOptions | None = None,
    read_only: bool = False,
) -> Store:
    """Opens the store at ``url`` and makes sure its schema is current.

    Args:
        url: ``memory://``, or a database URL (``sqlite:///path.db``, ``postgresql://...``,
            ``mssql+pyodbc://...``; driver names are mapped to floworch's drivers). None
            means ``memory://``; the CLI and hosts pass ``FLOWORCH_DB_URL`` or
            :func:`~floworch.storage.sql.urls.default_database_url`.
        migrate: apply pending migrations now (default). With False, a database that is not at
            the newest revision is refused instead.
        options: connection pool and timeout settings.
        read_only: open for reading only (what the CLI's read commands use): nothing is
            migrated, created or altered (a SQLite file is opened ``mode=ro`` and keeps its
            journal mode), a missing SQLite file is an error, and every write fails.

    A SQLite file is switched to WAL (readers never wait for the writer) only once floworch's
    schema is in it: after migrating it, or after finding it current with ``migrate=False``.

    Raises:
        StorageUnavailableError: the database cannot be reached (the message names its host,
            never the password).
        SchemaVersionError: the database is at a revision this floworch does not know, or (with
            ``migrate=False`` or ``read_only``) not at the newest one.
        StorageError: a bad URL, a missing or read-only SQLite file, or another failure.
    """
    if url is None or is_memory_url(url):
        return MemoryStore()
    driver_url = to_driver_url(url)
    if read_only:
        path = sqlite_file(driver_url)
        if path is not None and not path.is_file():
            raise StorageError(
                f"no floworch database at {path} (read-only commands never create one); "
                "check --db or FLOWORCH_DB_URL"
            )
    store = SqlStore.from_url(driver_url, options, read_only=read_only)
    try:
        if migrate and not read_only:
            await _migrate.upgrade(store.engine)
        else:
            await _migrate.check_schema(store.engine)
        database = store.database
        if isinstance(database, SqliteDatabase) and not read_only and not _opened_ro(url):
            with translating(store.url):
                await database.use_wal()
    except BaseException:
        await store.close()
        raise
    return store


def _opened_ro(url: str) -> bool:
    """Whether a SQLite URL itself asks for read-only access (``mode=ro``)."""
    return "mode=ro" in url


__all__ = ["StorageError", "open_store"]
