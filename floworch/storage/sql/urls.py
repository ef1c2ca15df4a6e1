"""Database URLs: the default location, and mapping plain URLs onto the async drivers.

Users write the URL they know (``sqlite:///x.db``, ``postgresql://u@h/db``,
``mssql+pyodbc://...``); the adapter runs on asyncio, so each is mapped to its async driver:
``sqlite+aiosqlite``, ``postgresql+psycopg`` and ``mssql+aioodbc``.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from floworch.errors import StorageError

MEMORY_URL = "memory://"
"""Selects the in-memory store (nothing persisted)."""

DEFAULT_DIRECTORY = ".floworch"
DEFAULT_FILENAME = "floworch.db"

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "mssql": "mssql+aioodbc",
    "mssql+pyodbc": "mssql+aioodbc",
    "mssql+aioodbc": "mssql+aioodbc",
}


def default_database_url(cwd: Path) -> str:
    """The embedded default: a SQLite file ``.floworch/floworch.db`` under ``cwd``.

    Args:
        cwd: the working directory (the CLI passes ``Path.cwd()``).

    Returns:
        An absolute ``sqlite+aiosqlite`` URL. The directory is created when the store opens.
    """
    return f"sqlite+aiosqlite:///{(cwd / DEFAULT_DIRECTORY / DEFAULT_FILENAME).resolve()}"


def is_memory_url(url: str) -> bool:
    """Whether ``url`` selects the in-memory store."""
    return url.strip().lower() in (MEMORY_URL, "memory:", "memory")


def to_async_url(url: str) -> URL:
    """Parses ``url`` and switches it to floworch's async driver for that database.

    Raises:
        StorageError: the URL does not parse, names an unsupported database, or is an in-memory
            SQLite database (each connection would see its own empty database).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(
            f"not a database URL: {url!r} (expected e.g. sqlite:///path/floworch.db, "
            "postgresql://user@host/db or mssql+pyodbc://@server/db?driver=...)"
        ) from exc
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        supported = "sqlite, postgresql, mssql (or memory://)"
        raise StorageError(
            f"unsupported database {parsed.drivername!r} in URL "
            f"{parsed.render_as_string(hide_password=True)!r}; supported: {supported}"
        )
    parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or "mode=memory" in database:
            raise StorageError(
                "an in-memory SQLite database cannot be shared by the store's connections; "
                "use memory:// for an in-memory store or give a file path"
            )
    return parsed


def sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL (None for other databases or ``file:`` URIs)."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    if url.database.startswith("file:"):
        return None
    return Path(url.database)
