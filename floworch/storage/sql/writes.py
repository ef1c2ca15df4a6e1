"""Race-safe write patterns shared by the transaction and the store: insert-once and upsert.

PostgreSQL and SQLite do both in one statement (``ON CONFLICT``); an insert-once of many rows is
one multi-row statement per chunk, returning the keys it inserted. SQL Server has no such clause
(and ``MERGE`` races without ``HOLDLOCK``), so there a plain ``INSERT`` runs inside a savepoint
and a duplicate-key error is caught: the transaction survives and the answer is "already there".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy import exc as sa_exc

from floworch.storage.sql import statements as st
from floworch.storage.sql.compiled import Stmt
from floworch.storage.sql.database import SqlConnection

# SQL Server: 2627 = primary key / unique constraint violation, 2601 = unique index violation.
_MSSQL_DUPLICATE_CODES = ("(2627)", "(2601)")
_CHUNK_VALUES = 2000
"""Bind values per multi-row statement (SQLite allows 32766, PostgreSQL 65535)."""


def is_duplicate_key(exc: sa_exc.IntegrityError, dialect: str) -> bool:
    """Whether an IntegrityError is a duplicate key (not, say, a foreign-key violation)."""
    if dialect != "mssql":
        return True
    text = str(exc.orig)
    return any(code in text for code in _MSSQL_DUPLICATE_CODES)


def _key_of(table: Table, row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(row[name] for name in st.primary_key_names(table))


async def insert_rows(
    conn: SqlConnection, table: Table, rows: Sequence[Mapping[str, Any]], *, later: bool = False
) -> None:
    """A plain insert of ``rows`` (all with the same columns). With ``later`` a single row may be
    held back until the transaction's next statement (see :meth:`SqlConnection.execute_later`)."""
    if not rows:
        return
    stmt = st.insert_rows(table, tuple(rows[0]))
    if len(rows) == 1 and later:
        await conn.execute_later(stmt, rows[0])
    elif len(rows) == 1:
        await conn.execute(stmt, rows[0])
    else:
        await conn.execute_many(stmt, rows)


async def insert_once(
    conn: SqlConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Inserts the rows whose primary key is new; returns the indexes of the rows inserted.

    Never raises on a duplicate, even when another transaction inserts the same key at once
    (the database makes the loser wait for the winner, then skip).
    """
    if not rows:
        return []
    dialect = conn.dialect_name
    if dialect not in st.ON_CONFLICT_DIALECTS:
        return await _insert_once_catching(conn, table, rows)
    inserted: set[tuple[Any, ...]] = set()
    for stmt, values in _multi_row_inserts(table, dialect, rows, returning_keys=True):
        result = await conn.execute(stmt, values)
        inserted.update(result.rows)
    fresh: list[int] = []
    for index, row in enumerate(rows):
        key = _key_of(table, row)
        if key in inserted:
            inserted.discard(key)  # a key repeated in the batch counts once
            fresh.append(index)
    return fresh


async def insert_later_skipping_duplicates(
    conn: SqlConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert-once of rows nobody needs to hear back about (PostgreSQL and SQLite only): the
    statements may be held back (see :meth:`SqlConnection.execute_later`)."""
    if not rows:
        return
    for stmt, values in _multi_row_inserts(table, conn.dialect_name, rows, returning_keys=False):
        await conn.execute_later(stmt, values)


def _multi_row_inserts(
    table: Table, dialect: str, rows: Sequence[Mapping[str, Any]], *, returning_keys: bool
) -> list[tuple[Stmt, dict[str, Any]]]:
    """Insert-once statements of ``rows`` (PostgreSQL, SQLite), as few as the bind limit allows."""
    columns = tuple(rows[0])
    per_chunk = max(1, _CHUNK_VALUES // len(columns))
    batch: list[tuple[Stmt, dict[str, Any]]] = []
    for start in range(0, len(rows), per_chunk):
        chunk = rows[start : start + per_chunk]
        stmt = st.insert_ignoring_duplicates(
            table, dialect, columns, rows=len(chunk), returning_keys=returning_keys
        )
        values = {f"{name}_{i}": row[name] for i, row in enumerate(chunk) for name in columns}
        batch.append((stmt, values))
    return batch


async def _insert_once_catching(
    conn: SqlConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    stmt = st.insert_ignoring_duplicates(
        table, conn.dialect_name, tuple(rows[0]), returning_keys=False
    )
    fresh: list[int] = []
    seen: set[tuple[Any, ...]] = set()
    for index, row in enumerate(rows):
        key = _key_of(table, row)
        if key in seen:
            continue
        seen.add(key)
        if await conn.insert_or_duplicate(stmt, row):
            fresh.append(index)
    return fresh


async def upsert(
    conn: SqlConnection,
    table: Table,
    row: Mapping[str, Any],
    update_columns: Sequence[str],
) -> None:
    """Inserts ``row``, or updates ``update_columns`` of the row with the same primary key."""
    dialect = conn.dialect_name
    if dialect in st.ON_CONFLICT_DIALECTS:
        await conn.execute(st.upsert_row(table, dialect, tuple(row), update_columns), row)
        return
    keys = {f"k_{name}": row[name] for name in st.primary_key_names(table)}
    values = {name: row[name] for name in update_columns} | keys
    for _ in range(3):
        result = await conn.execute(st.update_by_key(table, update_columns), values)
        if result.rowcount:
            return
        if await insert_once(conn, table, [row]):
            return
        # Lost an insert race to a concurrent writer: its row exists now, so update it.
    raise sa_exc.IntegrityError("upsert kept losing races", None, Exception(str(keys)))
