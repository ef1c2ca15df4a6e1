"""SQL Server: SQLAlchemy's pyodbc dialect, one thread per connection ("lane").

pyodbc has no asyncio interface, so each connection lives on its own thread and the store's
coroutines hand it one statement at a time. Statements run through SQLAlchemy's own execution
(``Connection.execute`` of the same Core constructs the other databases compile once), which
keeps SQL Server's driver specifics (``OUTPUT inserted``, datetimeoffset, Entra tokens, savepoints)
in SQLAlchemy's hands. Connections come from SQLAlchemy's pool, so ``pool_recycle`` and
``pool_pre_ping`` apply as usual. The same class runs on any SQLAlchemy URL; the test suite runs
the store contract through it on SQLite to exercise this path without a SQL Server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.sql import Executable

from floworch.storage.sql.compiled import BIND_PREFIX, Stmt
from floworch.storage.sql.database import (
    NO_VALUES,
    Batch,
    Result,
    SqlConnection,
    SqlStats,
    acquire_pool_slot,
    execute_in_turn,
)
from floworch.storage.sql.lanes import Lane, shielded
from floworch.storage.sql.writes import is_duplicate_key

T = TypeVar("T")


def _named(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values keyed as the statement's bind parameters (see :data:`BIND_PREFIX`)."""
    return {BIND_PREFIX + name: value for name, value in values.items()}


@dataclass(frozen=True)
class LaneOptions:
    """SQLAlchemy execution options of a lane's connection per use."""

    transaction: Mapping[str, Any] = field(default_factory=dict)
    autocommit: Mapping[str, Any] = field(default_factory=lambda: {"isolation_level": "AUTOCOMMIT"})


class LaneConnection:
    """One SQLAlchemy connection used from one lane; see the module docstring."""

    def __init__(self, engine: Engine, lane: Lane, stats: SqlStats, options: LaneOptions) -> None:
        self._engine = engine
        self._lane = lane
        self._stats = stats
        self._options = options
        self._built: dict[Hashable, Executable] = {}
        self._conn: Connection | None = None
        self._in_tx = False

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    def _statement(self, stmt: Stmt) -> Executable:
        found = self._built.get(stmt.key)
        if found is None:
            found = self._built[stmt.key] = stmt.build()
        return found

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._engine.connect()
            self._stats.connections += 1
            conn.execution_options(**self._options.autocommit)
            self._conn = conn
        return self._conn

    async def begin(self) -> None:
        def run() -> None:
            self._close()
            conn = self._engine.connect()
            self._stats.connections += 1
            conn.execution_options(**self._options.transaction)
            self._stats.statements += 1
            self._stats.round_trips += 1
            conn.begin()
            self._conn, self._in_tx = conn, True

        await self._lane.call(run)

    async def commit(self) -> None:
        def run() -> None:
            if self._conn is not None and self._in_tx:
                self._stats.statements += 1
                self._stats.round_trips += 1
                self._conn.commit()
                self._stats.commits += 1
            self._close()

        await self._lane.call(run)

    async def rollback(self) -> None:
        await self._lane.call(self._close)

    async def release(self) -> None:
        """Gives the connection back to SQLAlchemy's pool (rolling back what is open)."""
        await self._lane.call(self._close)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._in_tx = False
        if conn is not None:
            conn.close()  # rolls back an open transaction

    async def execute(self, stmt: Stmt, values: Mapping[str, Any] = NO_VALUES) -> Result:
        statement = self._statement(stmt)

        def run() -> Result:
            self._stats.statements += 1
            self._stats.round_trips += 1
            result = self._connection().execute(statement, _named(values))
            rows = [tuple(row) for row in result.all()] if result.returns_rows else []
            columns = tuple(result.keys()) if result.returns_rows else ()
            if not self._in_tx and not result.returns_rows:
                self._stats.commits += 1
            return Result(rows, result.rowcount, columns)

        return await self._lane.call(run)

    async def execute_later(self, stmt: Stmt, values: Mapping[str, Any] = NO_VALUES) -> None:
        await self.execute(stmt, values)  # pyodbc has no pipeline: every statement waits

    async def execute_unflushed(
        self,
        stmt: Stmt,
        values: Mapping[str, Any] = NO_VALUES,
        *,
        reads: Batch = (),
    ) -> list[Result]:
        # Delayed durability is the database's choice: this is a plain statement.
        return await execute_in_turn(self, [(stmt, values), *reads])

    async def execute_all(self, batch: Batch) -> list[Result]:
        return await execute_in_turn(self, batch)

    async def execute_many(self, stmt: Stmt, values: Sequence[Mapping[str, Any]]) -> None:
        statement = self._statement(stmt)

        def run() -> None:
            self._stats.statements += 1
            self._stats.round_trips += 1
            self._connection().execute(statement, [_named(v) for v in values])

        await self._lane.call(run)

    async def insert_or_duplicate(self, stmt: Stmt, values: Mapping[str, Any]) -> bool:
        statement = self._statement(stmt)

        def run() -> bool:
            conn = self._connection()
            try:
                with conn.begin_nested():
                    self._stats.statements += 1
                    self._stats.round_trips += 1
                    conn.execute(statement, _named(values))
                return True
            except sa_exc.IntegrityError as exc:
                if not is_duplicate_key(exc, conn.dialect.name):
                    raise
                return False

        return await self._lane.call(run)


class LaneDatabase:
    """Lanes over one SQLAlchemy engine: at most ``size`` connections in use at once."""

    def __init__(
        self,
        engine: Engine,
        url: URL,
        *,
        size: int,
        timeout: float,
        options: LaneOptions | None = None,
    ) -> None:
        self.url = url
        self._options = options or LaneOptions()
        self.engine = engine
        self.dialect = engine.dialect
        self.stats = SqlStats()
        self._timeout = timeout
        self._idle: list[LaneConnection] = []
        self._all: list[Lane] = []
        self._slots = asyncio.Semaphore(max(1, size))

    async def _acquire(self) -> LaneConnection:
        await acquire_pool_slot(self._slots, self._timeout, self.url)
        if self._idle:
            return self._idle.pop()
        lane = Lane(f"floworch-sql-{len(self._all)}")
        self._all.append(lane)
        return LaneConnection(self.engine, lane, self.stats, self._options)

    def _release(self, conn: LaneConnection) -> None:
        self._idle.append(conn)
        self._slots.release()

    @asynccontextmanager
    async def connection(self, *, write: bool) -> AsyncIterator[SqlConnection]:
        conn = await self._acquire()
        try:
            yield conn
        finally:
            await shielded(conn.release())
            self._release(conn)

    async def close(self) -> None:
        for lane in self._all:
            lane.stop()
        self._all, self._idle = [], []
        await asyncio.to_thread(self.engine.dispose)
