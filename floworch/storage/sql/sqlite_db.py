"""SQLite: ``sqlite3`` connections driven on the event loop's own thread.

A SQLite statement on a local file takes microseconds, so the adapter runs it inline instead of
handing it to a thread (a hop costs more than the statement). What could block the loop is
waiting for another process's write lock, so connections never wait inside SQLite once set up
(``busy_timeout = 0``; only the set-up PRAGMAs of a new connection wait there): a statement
that finds the database busy before it changed anything
(``BEGIN IMMEDIATE``, a single statement outside a transaction, a read, a ``COMMIT`` that must
wait for readers) is retried here with ``asyncio.sleep`` between attempts, up to the configured
busy timeout, so the loop keeps running other work meanwhile.

One store holds two connections: the writer, which every write uses (SQLite has one writer per
file; an asyncio lock queues this process's writers in order), and the reader for reads outside
a transaction (in WAL mode readers never wait for the writer and see only committed data).

Connection settings: ``synchronous`` (``NORMAL`` by default, ``FULL`` with ``?synchronous=full``),
``foreign_keys=ON``, ``case_sensitive_like=ON``. The journal mode is not a connection setting but
a property of the file: the store switches a file to WAL only after it created or migrated
floworch's schema in it (see :meth:`SqliteDatabase.use_wal`), never a file opened read-only.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine import URL, Dialect

from floworch.storage.sql.compiled import StatementCache, Stmt
from floworch.storage.sql.database import (
    NO_VALUES,
    Batch,
    Result,
    SqlConnection,
    SqlStats,
    execute_in_turn,
)

T = TypeVar("T")

_BUSY_DELAYS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.05)
"""Seconds between attempts on a busy database (then every 50 ms), as SQLite's own handler."""
_BUSY_MESSAGES = ("database is locked", "database is busy", "table is locked")
SYNCHRONOUS_MODES = ("normal", "full")


def is_busy(exc: BaseException) -> bool:
    """Whether a driver error means another connection holds a lock we need."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return any(what in text for what in _BUSY_MESSAGES)


class SqliteConnection:
    """One ``sqlite3`` connection run inline; see the module docstring."""

    dialect_name = "sqlite"

    def __init__(
        self,
        raw: sqlite3.Connection,
        cache: StatementCache,
        stats: SqlStats,
        busy: float,
        *,
        full: bool = False,
    ) -> None:
        self.raw = raw
        self._full = full
        self._wal = False  # seen in WAL mode (a file never leaves it once switched)
        self._cache = cache
        self._stats = stats
        self._busy = busy

    async def execute(self, stmt: Stmt, values: Mapping[str, Any] = NO_VALUES) -> Result:
        compiled = self._cache.get(stmt)
        params = compiled.parameters(values)
        raw = self.raw
        self._stats.statements += 1
        self._stats.round_trips += 1
        try:
            cursor = raw.execute(compiled.sql, params)
            found = cursor.fetchall()
        except sqlite3.OperationalError as exc:
            if raw.in_transaction or not is_busy(exc):
                raise

            def again() -> tuple[sqlite3.Cursor, list[Any]]:
                self._stats.statements += 1
                self._stats.round_trips += 1
                retried = raw.execute(compiled.sql, params)
                return retried, retried.fetchall()

            cursor, found = await self._wait_and_retry(again, exc)
        if compiled.writes and not raw.in_transaction:
            self._stats.commits += 1
        return Result(compiled.rows(found) if found else [], cursor.rowcount, compiled.columns)

    async def execute_later(self, stmt: Stmt, values: Mapping[str, Any] = NO_VALUES) -> None:
        await self.execute(stmt, values)  # in-process: holding it back would save nothing

    async def execute_unflushed(
        self,
        stmt: Stmt,
        values: Mapping[str, Any] = NO_VALUES,
        *,
        reads: Batch = (),
    ) -> list[Result]:
        if not self._full or self.raw.in_transaction or not self._in_wal():
            written = await self.execute(stmt, values)
        else:
            # WAL with synchronous=NORMAL writes the commit to the log without an fsync; the
            # next FULL commit fsyncs the log, and this commit with it.
            self.raw.execute("PRAGMA synchronous = NORMAL")
            try:
                written = await self.execute(stmt, values)
            finally:
                self.raw.execute("PRAGMA synchronous = FULL")
        return [written, *await execute_in_turn(self, reads)]

    def _in_wal(self) -> bool:
        """Whether the file is in WAL mode, where ``synchronous = NORMAL`` cannot corrupt it."""
        if not self._wal:
            row = self.raw.execute("PRAGMA journal_mode").fetchone()
            self._wal = bool(row) and str(row[0]).lower() == "wal"
        return self._wal

    async def execute_all(self, batch: Batch) -> list[Result]:
        return await execute_in_turn(self, batch)

    async def execute_many(self, stmt: Stmt, values: Sequence[Mapping[str, Any]]) -> None:
        compiled = self._cache.get(stmt)
        params = [compiled.parameters(v) for v in values]
        raw = self.raw

        def run() -> None:
            self._stats.statements += 1
            self._stats.round_trips += 1
            raw.executemany(compiled.sql, params)

        await self._patiently(run, retry=not raw.in_transaction)
        if compiled.writes and not raw.in_transaction:
            self._stats.commits += 1

    async def insert_or_duplicate(self, stmt: Stmt, values: Mapping[str, Any]) -> bool:
        raise NotImplementedError("SQLite skips duplicates with ON CONFLICT")  # pragma: no cover

    async def begin(self) -> None:
        """Opens a write transaction, waiting (asynchronously) for other processes' writers."""

        def run() -> None:
            self._stats.statements += 1
            self._stats.round_trips += 1
            # No SQLAlchemy construct exists for BEGIN IMMEDIATE; a fixed string like the PRAGMAs.
            self.raw.execute("BEGIN IMMEDIATE")

        if self.raw.in_transaction:  # left open by a failure nobody rolled back: start clean
            await self.rollback()
        await self._patiently(run, retry=True)

    async def commit(self) -> None:
        def run() -> None:
            self._stats.statements += 1
            self._stats.round_trips += 1
            self.raw.commit()

        # A COMMIT that must wait for readers (rollback-journal files) can simply run again.
        await self._patiently(run, retry=True)
        self._stats.commits += 1

    async def rollback(self) -> None:
        if self.raw.in_transaction:
            self._stats.statements += 1
            self._stats.round_trips += 1
            self.raw.rollback()

    async def _patiently(self, attempt: Callable[[], T], *, retry: bool) -> T:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not retry or not is_busy(exc):
                raise
            return await self._wait_and_retry(attempt, exc)

    async def _wait_and_retry(self, attempt: Callable[[], T], first: sqlite3.OperationalError) -> T:
        """Runs ``attempt`` again after short sleeps while the database stays busy."""
        last = first
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy
        tries = 0
        while True:
            delay = _BUSY_DELAYS[tries] if tries < len(_BUSY_DELAYS) else _BUSY_DELAYS[-1]
            tries += 1
            if loop.time() + delay > deadline:
                raise last
            await asyncio.sleep(delay)
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                last = exc


class SqliteDatabase:
    """The writer and the reader connection of one SQLite file (opened on first use)."""

    def __init__(
        self,
        url: URL,
        *,
        busy_timeout: float,
        synchronous: str,
        read_only: bool,
    ) -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self.url = url
        self.dialect: Dialect = pysqlite.dialect()
        self.stats = SqlStats()
        self.read_only = read_only
        self._cache = StatementCache(self.dialect)
        self._busy = busy_timeout
        self._synchronous = synchronous
        self._writer: SqliteConnection | None = None
        self._reader: SqliteConnection | None = None
        self._write_lock = asyncio.Lock()
        self._writing: asyncio.Task[Any] | None = None

    def _open(self) -> SqliteConnection:
        args, kwargs = self.dialect.create_connect_args(self.url)
        kwargs = {**kwargs, "timeout": 0, "isolation_level": None, "check_same_thread": False}
        raw = sqlite3.connect(*args, **kwargs)  # type: ignore[call-overload]
        try:
            # PRAGMAs have no SQLAlchemy construct; these fixed strings are the one exception.
            # The first statement on a connection reads the file's header, which another
            # process switching the file to WAL holds locked for a moment: the set-up waits
            # inside SQLite (once per connection), every statement after it does not.
            raw.execute(f"PRAGMA busy_timeout = {int(self._busy * 1000)}")
            raw.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            raw.execute("PRAGMA foreign_keys = ON")
            raw.execute("PRAGMA case_sensitive_like = ON")
            raw.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            raw.close()
            raise
        self.stats.connections += 1
        return SqliteConnection(
            raw, self._cache, self.stats, self._busy, full=self._synchronous == "full"
        )

    def _writer_connection(self) -> SqliteConnection:
        if self._writer is None:
            self._writer = self._open()
        return self._writer

    @asynccontextmanager
    async def _writing_lock(self) -> AsyncIterator[SqliteConnection]:
        task = asyncio.current_task()
        if task is not None and self._writing is task:
            raise RuntimeError(
                "a SQLite write was started inside this task's own open transaction; "
                "it would wait for itself"
            )
        async with self._write_lock:
            self._writing = task
            try:
                yield self._writer_connection()
            finally:
                self._writing = None

    @asynccontextmanager
    async def connection(self, *, write: bool) -> AsyncIterator[SqlConnection]:
        """The writer (under this store's write lock) or the reader connection."""
        if write:
            async with self._writing_lock() as conn:
                try:
                    yield conn
                finally:
                    if conn.raw.in_transaction:  # whoever began it failed to finish it
                        await conn.rollback()
            return
        if self._reader is None:
            self._reader = self._open()
        yield self._reader

    async def use_wal(self) -> str:
        """Switches the file to WAL (persistent; a no-op when it already is); returns the mode."""
        async with self._writing_lock() as conn:

            def run() -> str:
                self.stats.statements += 1
                self.stats.round_trips += 1
                row = conn.raw.execute("PRAGMA journal_mode = WAL").fetchone()
                return str(row[0]) if row else ""

            return await conn._patiently(run, retry=True)

    async def close(self) -> None:
        for conn in (self._writer, self._reader):
            if conn is not None:
                conn.raw.close()
        self._writer = self._reader = None
