"""Race-safe write patterns shared by the transaction and the store: insert-once and upsert.

PostgreSQL and SQLite do both in one statement (``ON CONFLICT``). SQL Server has no such clause
(and ``MERGE`` races without ``HOLDLOCK``), so there a plain ``INSERT`` runs inside a savepoint
and a duplicate-key error is caught: the transaction survives and the answer is "already there".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from floworch.storage.sql import statements as st

# SQL Server: 2627 = primary key / unique constraint violation, 2601 = unique index violation.
_MSSQL_DUPLICATE_CODES = ("(2627)", "(2601)")


def is_duplicate_key(exc: sa_exc.IntegrityError, dialect: str) -> bool:
    """Whether an IntegrityError is a duplicate key (not, say, a foreign-key violation)."""
    if dialect != "mssql":
        return True
    text = str(exc.orig)
    return any(code in text for code in _MSSQL_DUPLICATE_CODES)


def _key_of(table: Table, row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(row[name] for name in st.primary_key_names(table))


async def insert_once(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Inserts the rows whose primary key is new; returns the indexes of the rows inserted.

    Never raises on a duplicate, even when another transaction inserts the same key at once
    (the database makes the loser wait for the winner, then skip).
    """
    if not rows:
        return []
    dialect = conn.dialect.name
    if dialect in st.ON_CONFLICT_DIALECTS:
        stmt = st.insert_ignoring_duplicates(table, dialect, returning_keys=True)
        params = [dict(row) for row in rows]
        result = await conn.execute(stmt, params[0] if len(params) == 1 else params)
        inserted = {tuple(r) for r in result.all()}
        fresh: list[int] = []
        for index, row in enumerate(rows):
            key = _key_of(table, row)
            if key in inserted:
                inserted.discard(key)  # a key repeated in the batch counts once
                fresh.append(index)
        return fresh
    return await _insert_once_catching(conn, table, rows)


async def _insert_once_catching(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    dialect = conn.dialect.name
    stmt = st.insert_ignoring_duplicates(table, dialect, returning_keys=False)
    keys = [_key_of(table, row) for row in rows]
    if len(rows) > 1 and len(set(keys)) == len(keys):
        # Fast path: one batched insert; only if it hits a duplicate fall back to row by row.
        try:
            async with conn.begin_nested():
                await conn.execute(stmt, [dict(row) for row in rows])
            return list(range(len(rows)))
        except sa_exc.IntegrityError as exc:
            if not is_duplicate_key(exc, dialect):
                raise
    fresh: list[int] = []
    seen: set[tuple[Any, ...]] = set()
    for index, row in enumerate(rows):
        if keys[index] in seen:
            continue
        seen.add(keys[index])
        try:
            async with conn.begin_nested():
                await conn.execute(stmt, dict(row))
            fresh.append(index)
        except sa_exc.IntegrityError as exc:
            if not is_duplicate_key(exc, dialect):
                raise
    return fresh


async def upsert(
    conn: AsyncConnection,
    table: Table,
    row: Mapping[str, Any],
    update_columns: Sequence[str],
) -> None:
    """Inserts ``row``, or updates ``update_columns`` of the row with the same primary key."""
    dialect = conn.dialect.name
    if dialect in st.ON_CONFLICT_DIALECTS:
        await conn.execute(st.upsert_row(table, dialect, update_columns), dict(row))
        return
    key = {name: row[name] for name in st.primary_key_names(table)}
    values = {name: row[name] for name in update_columns}
    for _ in range(3):
        result = await conn.execute(st.update_by_key(table, key, values))
        if result.rowcount:
            return
        if await insert_once(conn, table, [row]):
            return
        # Lost an insert race to a concurrent writer: its row exists now, so update it.
    raise sa_exc.IntegrityError("upsert kept losing races", None, Exception(str(key)))
