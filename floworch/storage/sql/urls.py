"""Database URLs: the default location, mapping users' URLs onto floworch's drivers, and the
read-only form of a SQLite URL.

Users write the URL they know (``sqlite:///x.db``, ``postgresql://u@h/db``,
``mssql+pyodbc://...``, or the async driver names earlier floworch versions used); each is mapped
to the driver the store runs on: ``sqlite+pysqlite`` (the standard ``sqlite3`` module),
``postgresql+psycopg`` (psycopg 3) and ``mssql+pyodbc``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from floworch.errors import StorageError

MEMORY_URL = "memory://"
"""Selects the in-memory store (nothing persisted)."""

DEFAULT_DIRECTORY = ".floworch"
DEFAULT_FILENAME = "floworch.db"

_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
    "mssql": "mssql+pyodbc",
    "mssql+pyodbc": "mssql+pyodbc",
    "mssql+aioodbc": "mssql+pyodbc",
}


def default_database_url(cwd: Path) -> str:
    """The embedded default: a SQLite file ``.floworch/floworch.db`` under ``cwd``.

    Args:
        cwd: the working directory (the CLI passes ``Path.cwd()``).

    Returns:
        An absolute ``sqlite`` URL. The directory is created when the store opens for writing.
    """
    return f"sqlite:///{(cwd / DEFAULT_DIRECTORY / DEFAULT_FILENAME).resolve()}"


def is_memory_url(url: str) -> bool:
    """Whether ``url`` selects the in-memory store."""
    return url.strip().lower() in (MEMORY_URL, "memory:", "memory")


def to_driver_url(url: str) -> URL:
    """Parses ``url`` and switches it to floworch's driver for that database.

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
    driver = _DRIVERS.get(parsed.drivername)
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


to_async_url = to_driver_url
"""The name of :func:`to_driver_url` in earlier versions."""


def sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL (``file:`` URIs included; None for other databases)."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    database = url.database
    if database.startswith("file:"):
        path = unquote(database[len("file:") :].split("?", 1)[0])
        return Path(path) if path else None
    return Path(database)


def read_only_sqlite_url(url: URL) -> URL:
    """The URL opening the same SQLite file read-only (``mode=ro``): never creates or alters it."""
    database = url.database or ""
    if not database.startswith("file:"):
        database = "file:" + quote(str(Path(database).resolve()), safe="/")
    return url.set(database=database).update_query_dict({"mode": "ro", "uri": "true"})
