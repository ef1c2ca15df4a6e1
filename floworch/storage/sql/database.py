"""The adapter's view of one database: connections that run compiled statements.

Three implementations share these protocols: SQLite (``sqlite3`` on the event loop's own thread,
see :mod:`floworch.storage.sql.sqlite_db`), PostgreSQL (psycopg on one thread per connection, see
:mod:`floworch.storage.sql.postgres_db`) and SQL Server (SQLAlchemy's pyodbc dialect on one
thread per connection, see :mod:`floworch.storage.sql.mssql_db`). The store's operations are
written once against :class:`SqlConnection`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine import URL, Dialect

from floworch.errors import StorageUnavailableError
from floworch.storage.sql.compiled import Row, Stmt
from floworch.storage.sql.errors import describe_url

NO_VALUES: Mapping[str, Any] = {}
Batch = Sequence[tuple[Stmt, Mapping[str, Any]]]
"""Statements with their bind values, run in order."""


@dataclass
class SqlStats:
    """What the store sent to its database (the benchmark prints these per step transition).

    Attributes:
        statements: every statement sent to the driver, ``BEGIN`` and ``COMMIT`` included.
        round_trips: requests that waited for the database's answer. PostgreSQL sends the
            statements a transaction held back together with the next one (one pipeline, one
            round trip); elsewhere each statement is one.
        commits: transactions committed: explicit commits plus writes run outside a transaction
            (each commits on its own).
        connections: connections opened.
    """

    statements: int = 0
    round_trips: int = 0
    commits: int = 0
    connections: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    """Rows (with the column types' result processing applied) and the affected row count."""

    rows: list[Row] = field(default_factory=list)
    rowcount: int = -1
    columns: tuple[str, ...] = ()

    def first(self) -> Row | None:
        """The first row, or None."""
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self.rows[0][0] if self.rows else None


class SqlConnection(Protocol):
    """One connection as the store's operations use it."""

    @property
    def dialect_name(self) -> str:
        """``sqlite``, ``postgresql`` or ``mssql``."""

    async def execute(self, stmt: Stmt, values: Mapping[str, Any] = NO_VALUES) -> Result:
        """Runs one statement with its bind values."""

    async def execute_later(self, stmt: Stmt, values: Mapping[str, Any] = NO_VALUES) -> None:
        """Runs a statement whose rows and row count the caller does not need. In a
        transaction the connection may hold it back and send it with the next statement or the
        commit (PostgreSQL: in one round trip); an error of it then surfaces there, and the
        transaction fails all the same. Outside a transaction it runs at once."""

    async def execute_unflushed(
        self,
        stmt: Stmt,
        values: Mapping[str, Any] = NO_VALUES,
        *,
        reads: Batch = (),
    ) -> list[Result]:
        """Runs one write outside a transaction, then ``reads`` (which see the write), and
        returns their results, the write's first (PostgreSQL: one round trip for all).

        The write is committed without waiting for the disk
        (PostgreSQL: ``synchronous_commit`` off for that transaction; SQLite: ``synchronous =
        NORMAL`` for that statement). A crash of this process never loses it; a power loss or a
        crash of the database server may, unless a later ordinary commit reached the disk first
        (the log is written in order, so that commit flushes this one too). SQL Server runs it
        as :meth:`execute`."""

    async def execute_all(self, batch: Batch) -> list[Result]:
        """Runs statements in order, each seeing what the ones before it did, and returns each
        one's result. In a transaction PostgreSQL sends them, with any held-back ones, in one
        round trip; elsewhere they run one after another."""

    async def execute_many(self, stmt: Stmt, values: Sequence[Mapping[str, Any]]) -> None:
        """Runs one statement once per parameter set (no rows come back)."""

    async def insert_or_duplicate(self, stmt: Stmt, values: Mapping[str, Any]) -> bool:
        """Runs an insert inside a savepoint; False (and nothing written) on a duplicate key.
        Only SQL Server needs it (the other databases skip duplicates with ``ON CONFLICT``)."""

    async def begin(self) -> None:
        """Starts a write transaction (SQLite: ``BEGIN IMMEDIATE``)."""

    async def commit(self) -> None:
        """Commits the transaction."""

    async def rollback(self) -> None:
        """Rolls the transaction back (nothing when none is open)."""


class Database(Protocol):
    """Where the store gets connections."""

    url: URL
    dialect: Dialect
    stats: SqlStats

    def connection(self, *, write: bool) -> AbstractAsyncContextManager[SqlConnection]:
        """A connection for this caller alone until the block ends. Its statements commit on
        their own until :meth:`SqlConnection.begin`; ``write`` says it will write (on SQLite the
        writer connection, held under this process's write lock)."""

    async def close(self) -> None:
        """Closes every connection."""


async def execute_in_turn(conn: SqlConnection, batch: Batch) -> list[Result]:
    """:meth:`SqlConnection.execute_all` for a driver without pipelining: one after another."""
    return [await conn.execute(stmt, values) for stmt, values in batch]


async def acquire_pool_slot(slots: asyncio.Semaphore, timeout: float, url: URL) -> None:
    """Waits for a free connection slot of a pool; one clear error when none frees in time.

    Raises:
        StorageUnavailableError: the pool stayed exhausted for ``timeout`` seconds.
    """
    if not slots.locked():
        await slots.acquire()  # a free slot: taken at once, with no timer task
        return
    try:
        await asyncio.wait_for(slots.acquire(), timeout)
    except TimeoutError:
        raise StorageUnavailableError(
            f"no free connection to the {describe_url(url)} within {timeout:g} s "
            "(pool exhausted); raise the pool size or lower the concurrency"
        ) from None
