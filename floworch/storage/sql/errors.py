"""Translation of driver errors into floworch's storage exceptions.

The adapter never lets a driver (``sqlite3``, psycopg, pyodbc) or SQLAlchemy exception escape:
every public method runs inside :func:`translating`, which maps lost connections and busy
databases to :class:`StorageUnavailableError` (worth retrying), a read-only SQLite file to a
plain :class:`StorageError` that says what to fix, broken uniqueness to :class:`ConflictError`,
a value a column cannot hold to :class:`StorageError`, and anything else to
:class:`StorageError`, always chained with ``from exc``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from floworch.errors import ConflictError, StorageError, StorageUnavailableError
from floworch.storage.sql.compiled import UnstorableValue

# SQLSTATEs (PostgreSQL) and error numbers (SQL Server) that mean "run the transaction again".
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
_MSSQL_DEADLOCK = "(1205)"
# SQLSTATE classes of a connection that is gone: 08 connection exception, 57P0x shutdown.
_LOST_SQLSTATE_PREFIXES = ("08", "57P")

try:  # psycopg is an optional extra: the SQLite-only paths must not need it
    import psycopg
except ImportError:  # pragma: no cover
    psycopg = None  # type: ignore[assignment]

_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.SQLAlchemyError,
    OSError,
    UnstorableValue,
    sqlite3.Error,
    *((psycopg.Error,) if psycopg is not None else ()),
)


def describe_url(url: URL) -> str:
    """The database's location for messages: driver, host, port and database, never a password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    return f"{url.get_backend_name()} database {url.database or ''!s} on {host}{port}"


def _scrub(text: str, url: URL) -> str:
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def _driver_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def _is_integrity(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.IntegrityError | sqlite3.IntegrityError):
        return True
    return psycopg is not None and isinstance(exc, psycopg.IntegrityError)


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state is not None and state.startswith(_LOST_SQLSTATE_PREFIXES):
        return True
    return (
        psycopg is not None
        and isinstance(exc, psycopg.OperationalError)
        and "server closed the connection" in str(exc)
    )


def translate(exc: BaseException, url: URL) -> StorageError:
    """Maps a driver or SQLAlchemy exception to the floworch error a caller should see."""
    where = describe_url(url)
    detail = _scrub(_driver_message(exc), url)
    lowered = detail.lower()
    if isinstance(exc, UnstorableValue):
        return StorageError(f"the {where} cannot store {exc.name!r}: {detail}")
    if isinstance(exc, sa_exc.TimeoutError):
        return StorageUnavailableError(
            f"no free connection to the {where} in time (pool exhausted): {detail}; "
            "raise the pool size or lower the concurrency"
        )
    if _connection_lost(exc):
        return StorageUnavailableError(
            f"lost the connection to the {where}: {detail}; the transaction was rolled back, "
            "retry the operation"
        )
    if "readonly database" in lowered or "read-only" in lowered:
        return StorageError(
            f"the {where} is read-only ({detail}); make the file and its directory writable by "
            "this process, or point FLOWORCH_DB_URL at a writable database"
        )
    if _is_integrity(exc):
        return ConflictError(f"a write to the {where} broke a uniqueness rule: {detail}")
    if "database is locked" in lowered or "database is busy" in lowered:
        return StorageUnavailableError(
            f"the {where} stayed locked by another writer past the busy timeout: {detail}"
        )
    operational = (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        OSError,
        sqlite3.OperationalError,
    )
    if isinstance(exc, operational) or (
        psycopg is not None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    ):
        return StorageUnavailableError(f"cannot use the {where}: {detail}")
    return StorageError(f"the {where} failed: {detail}")


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed transaction may simply run again (deadlock victim, serialisation)."""
    if _sqlstate(exc) in _RETRYABLE_SQLSTATES:
        return True
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return _MSSQL_DEADLOCK in text or "database is locked" in text.lower()


@contextmanager
def translating(url: URL) -> Iterator[None]:
    """Re-raises any driver error inside the block as a floworch :class:`StorageError`."""
    try:
        yield
    except StorageError:
        raise
    except _DRIVER_ERRORS as exc:
        raise translate(exc, url) from exc
