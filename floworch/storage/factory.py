"""Opening a store from a URL: ``memory://`` or a SQLite, PostgreSQL or SQL Server database."""

from __future__ import annotations

from floworch.errors import StorageError
from floworch.storage.memory import MemoryStore
from floworch.storage.port import Store
from floworch.storage.sql import migrate as _migrate
from floworch.storage.sql.engine import SqlStoreOptions
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import is_memory_url, to_async_url


async def open_store(
    url: str | None = None,
    *,
    migrate: bool = True,
    options: SqlStoreOptions | None = None,
) -> Store:
    """Opens the store at ``url`` and makes sure its schema is current.

    Args:
        url: ``memory://``, or a database URL (``sqlite:///path.db``, ``postgresql://...``,
            ``mssql+pyodbc://...``; plain driver names are mapped to the async drivers). None
            means ``memory://``; the CLI and hosts pass ``FLOWORCH_DB_URL`` or
            :func:`~floworch.storage.sql.urls.default_database_url`.
        migrate: apply pending migrations now (default). With False, a database that is not at
            the newest revision is refused instead.
        options: connection pool and timeout settings.

    Raises:
        StorageUnavailableError: the database cannot be reached (the message names its host,
            never the password).
        SchemaVersionError: the database is at a revision this floworch does not know, or (with
            ``migrate=False``) not at the newest one.
        StorageError: a bad URL, a read-only SQLite file, or another database failure.
    """
    if url is None or is_memory_url(url):
        return MemoryStore()
    store = SqlStore.from_url(to_async_url(url), options)
    try:
        if migrate:
            await _migrate.upgrade(store.engine)
        else:
            await _migrate.check_schema(store.engine)
    except BaseException:
        await store.close()
        raise
    return store


__all__ = ["StorageError", "open_store"]
