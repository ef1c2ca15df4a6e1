"""PostgreSQL: psycopg 3 connections, each on its own lane (thread), in a small pool.

psycopg's synchronous connection on a thread costs about half the CPU and wall time per
statement of its asyncio connection (which pays for a generator, a waiter and several event-loop
turns per statement), so each connection lives on a :class:`~floworch.storage.sql.lanes.Lane`
and the store's coroutines hand it one statement at a time.

Connections run in autocommit mode: a statement outside a transaction commits on its own (a
claim, a read, marking ledger rows sent: one round trip each), and a transaction is an explicit
``BEGIN`` ... ``COMMIT``. Connections are opened on demand up to ``pool_size + max_overflow``,
reused newest first, replaced once older than ``pool_recycle``, and dropped when a statement
found them broken (the server went away, the network failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy.dialects.postgresql import psycopg as sa_psycopg
from sqlalchemy.engine import URL, Dialect

from floworch.storage.sql.compiled import Compiled, StatementCache, Stmt
from floworch.storage.sql.database import (
    NO_VALUES,
    Batch,
    Result,
    SqlConnection,
    SqlStats,
    acquire_pool_slot,
)
from floworch.storage.sql.lanes import Lane, shielded

_IDLE = psycopg.pq.TransactionStatus.IDLE
_UNUSABLE = (psycopg.pq.TransactionStatus.ACTIVE, psycopg.pq.TransactionStatus.UNKNOWN)


class PgConnection:
    """One psycopg connection (autocommit) and the lane it runs on.

    Inside a transaction, statements whose result nobody reads (``BEGIN``, and the writes the
    store sends with :meth:`execute_later`) are held back and sent with the next statement that
    does return something, or with the ``COMMIT``, in one pipeline: one round trip for all of
    them. An error of a held-back statement surfaces there, and the transaction then fails as it
    would have at that statement.
    """

    dialect_name = "postgresql"

    def __init__(
        self, raw: psycopg.Connection[Any], lane: Lane, cache: StatementCache, stats: SqlStats
    ) -> None:
        self.raw = raw
        self.lane = lane
        self.opened = time.monotonic()
        self._cursor = raw.cursor()
        self._aside = raw.cursor()  # runs the held-back statements, whose results are dropped
        self._cache = cache
        self._stats = stats
        self._held: list[_Held] = []
        self._open = False  # a transaction was begun (its BEGIN may still be held back)

    async def execute(self, stmt: Stmt, values: Mapping[str, Any] = NO_VALUES) -> Result:
        compiled = self._cache.get(stmt)
        params = compiled.parameters(values)
        held = self._take_held()
        self._stats.statements += 1
        self._stats.round_trips += 1
        [(found, count)] = await self.lane.call(lambda: self._send(held, [(compiled.sql, params)]))
        if compiled.writes and not self.in_transaction:
            self._stats.commits += 1
        return Result(compiled.rows(found) if found else [], count, compiled.columns)

    async def execute_all(self, batch: Batch) -> list[Result]:
        if not self._open or len(batch) < 2:
            return [await self.execute(stmt, values) for stmt, values in batch]
        compiled = [(self._cache.get(stmt), values) for stmt, values in batch]
        sends = [(c.sql, c.parameters(values)) for c, values in compiled]
        held = self._take_held()
        self._stats.statements += len(sends)
        self._stats.round_trips += 1
        answers = await self.lane.call(lambda: self._send(held, sends))
        return _results(compiled, answers)

    async def execute_later(self, stmt: Stmt, values: Mapping[str, Any] = NO_VALUES) -> None:
        if not self._open:
            await self.execute(stmt, values)
            return
        compiled = self._cache.get(stmt)
        self._held.append((compiled.sql, compiled.parameters(values)))
        self._stats.statements += 1

    async def execute_unflushed(
        self,
        stmt: Stmt,
        values: Mapping[str, Any] = NO_VALUES,
        *,
        reads: Batch = (),
    ) -> list[Result]:
        if self._open:
            raise RuntimeError("execute_unflushed runs alone, never in a transaction")
        compiled = [(self._cache.get(stmt), values)]
        compiled += [(self._cache.get(read), read_values) for read, read_values in reads]
        sends = [(c.sql, c.parameters(v)) for c, v in compiled]
        # One round trip: a transaction of its own whose commit does not wait for the WAL flush.
        held: list[_Held] = [("BEGIN", None), (_NO_FLUSH, None)]
        self._stats.statements += 3 + len(sends)
        self._stats.round_trips += 1
        answers = await self.lane.call(lambda: self._send(held, sends, then_commit=True))
        self._stats.commits += 1
        return _results(compiled, answers)

    async def execute_many(self, stmt: Stmt, values: Sequence[Mapping[str, Any]]) -> None:
        compiled = self._cache.get(stmt)
        params = [compiled.parameters(v) for v in values]
        held = self._take_held()
        self._stats.statements += 1
        self._stats.round_trips += 1

        def run() -> None:
            if held:
                self._send(held)
            self._cursor.executemany(compiled.sql, params)

        await self.lane.call(run)
        if compiled.writes and not self.in_transaction:
            self._stats.commits += 1

    async def insert_or_duplicate(self, stmt: Stmt, values: Mapping[str, Any]) -> bool:
        raise NotImplementedError("ON CONFLICT skips duplicates on PostgreSQL")  # pragma: no cover

    @property
    def in_transaction(self) -> bool:
        return self._open or self.raw.info.transaction_status != _IDLE

    @property
    def broken(self) -> bool:
        """Whether the connection cannot be reused (closed, lost, or mid-statement)."""
        return self.raw.closed or self.raw.broken or self.raw.info.transaction_status in _UNUSABLE

    async def begin(self) -> None:
        # Autocommit connection: the transaction is explicit (psycopg has no BEGIN call), and
        # its BEGIN travels with the transaction's first statement.
        self._stats.statements += 1
        self._held.append(("BEGIN", None))
        self._open = True

    async def commit(self) -> None:
        held = self._take_held()
        self._open = False
        if held == [("BEGIN", None)]:
            # Nothing reached the server: an empty transaction has nothing to commit.
            self._stats.statements -= 1
            return
        self._stats.statements += 1
        self._stats.round_trips += 1
        if held:
            await self.lane.call(lambda: self._send(held, then_commit=True))
        else:
            await self.lane.call(self.raw.commit)
        self._stats.commits += 1

    async def rollback(self) -> None:
        self._held = []  # never sent: nothing to undo on the server
        self._open = False

        def run() -> None:
            if not self.broken and self.raw.info.transaction_status != _IDLE:
                self._stats.statements += 1
                self._stats.round_trips += 1
                self.raw.rollback()

        await self.lane.call(run)

    def _take_held(self) -> list[_Held]:
        held, self._held = self._held, []
        return held

    def _send(
        self, held: list[_Held], lasts: Sequence[_Held] = (), *, then_commit: bool = False
    ) -> list[tuple[list[Any], int]]:
        """Runs on the lane: the held-back statements, then each of ``lasts`` (on a cursor of
        its own, whose rows and row count come back, in order) and, with ``then_commit``, a
        ``COMMIT``, in one pipeline when there is more than one statement. Each statement sees
        what the ones before it did (a lock taken first holds for the reads after it). On an
        error, a transaction opened by ``held`` for a one-shot statement is rolled back; a
        caller's transaction is left to its ``rollback``."""
        cursor = self._cursor
        if not held and not then_commit and len(lasts) == 1:
            cursor.execute(lasts[0][0], lasts[0][1])
            found = cursor.fetchall() if cursor.description is not None else []
            return [(found, cursor.rowcount)]
        cursors = [cursor] + [self.raw.cursor() for _ in lasts[1:]]
        answers: list[tuple[list[Any], int]] = []
        error: psycopg.Error | None = None
        try:
            with self.raw.pipeline() as pipeline:
                try:
                    for sql, params in held:
                        self._aside.execute(sql, params)
                    for each, (sql, params) in zip(cursors, lasts, strict=False):
                        each.execute(sql, params)
                    if then_commit:
                        self._aside.execute("COMMIT")
                    pipeline.sync()
                    for each in cursors[: len(lasts)]:
                        found = each.fetchall() if each.description is not None else []
                        answers.append((found, each.rowcount))
                except psycopg.Error as exc:
                    error = exc  # raised below, once the pipeline is closed
        except psycopg.Error as exc:  # pragma: no cover - the connection failed while closing
            error = error or exc
        if error is not None:
            if then_commit and not self.broken and self.raw.info.transaction_status != _IDLE:
                with contextlib.suppress(psycopg.Error):
                    self._stats.statements += 1
                    self.raw.rollback()
            raise error
        return answers


def _results(
    compiled: Sequence[tuple[Compiled, Any]], answers: Sequence[tuple[list[Any], int]]
) -> list[Result]:
    return [
        Result(c.rows(found) if found else [], count, c.columns)
        for (c, _), (found, count) in zip(compiled, answers, strict=True)
    ]


_Held = tuple[str, Any]
"""A statement's SQL and its driver parameters (None: a fixed text with no parameters)."""
_NO_FLUSH = "SET LOCAL synchronous_commit TO OFF"
"""The one setting floworch changes, for one transaction at a time (see execute_unflushed)."""


class PostgresDatabase:
    """A pool of :class:`PgConnection` for one database."""

    def __init__(
        self,
        url: URL,
        *,
        size: int,
        timeout: float,
        recycle: float,
        pre_ping: bool,
        connect_timeout: float,
        read_only: bool,
    ) -> None:
        self.url = url
        self.dialect: Dialect = sa_psycopg.dialect()  # type: ignore[no-untyped-call]
        self.stats = SqlStats()
        self._cache = StatementCache(self.dialect)
        _, params = self.dialect.create_connect_args(url)  # type: ignore[no-untyped-call]
        params["connect_timeout"] = max(1, int(connect_timeout))
        if read_only:
            options = params.get("options", "")
            params["options"] = f"{options} -c default_transaction_read_only=on".strip()
        self._params = params
        self._timeout = timeout
        self._recycle = recycle
        self._pre_ping = pre_ping
        self._idle: list[PgConnection] = []
        self._open_count = 0
        self._slots = asyncio.Semaphore(max(1, size))

    async def _open(self) -> PgConnection:
        lane = Lane(f"floworch-pg-{self._open_count}")
        self._open_count += 1
        try:
            raw = await lane.call(lambda: psycopg.connect(autocommit=True, **self._params))
        except BaseException:
            lane.stop()
            raise
        self.stats.connections += 1
        return PgConnection(raw, lane, self._cache, self.stats)

    async def _acquire(self) -> PgConnection:
        await acquire_pool_slot(self._slots, self._timeout, self.url)
        try:
            while self._idle:
                conn = self._idle.pop()
                if conn.broken or time.monotonic() - conn.opened > self._recycle:
                    await _close(conn)
                    continue
                if self._pre_ping and not await _alive(conn):
                    await _close(conn)
                    continue
                return conn
            return await self._open()
        except BaseException:
            self._slots.release()
            raise

    async def _discard(self, conn: PgConnection) -> None:
        try:
            await _close(conn)
        finally:
            self._slots.release()

    @asynccontextmanager
    async def connection(self, *, write: bool) -> AsyncIterator[SqlConnection]:
        conn = await self._acquire()
        try:
            yield conn
        finally:
            if conn.broken or conn.in_transaction:
                await shielded(self._discard(conn))
            else:  # back to the pool at once: nothing to await, so nothing to cancel
                self._idle.append(conn)
                self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)


async def _alive(conn: PgConnection) -> bool:
    try:
        await conn.lane.call(lambda: conn.raw.execute("SELECT 1"))  # a ping: no construct needed
    except psycopg.Error:
        return False
    return True


async def _close(conn: PgConnection) -> None:
    def run() -> None:
        with contextlib.suppress(psycopg.Error, OSError):
            conn.raw.close()

    try:
        await conn.lane.call(run)
    finally:
        conn.lane.stop()
