"""``SqlStore``: the store port on SQLite, PostgreSQL and SQL Server.

Statements are SQLAlchemy Core constructs compiled once per database (see
:mod:`floworch.storage.sql.compiled`) and run on the drivers' own connections (see
:mod:`floworch.storage.sql.database`). Migrations and tools use a synchronous SQLAlchemy engine
on the same URL (:attr:`SqlStore.engine`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.engine import URL, Engine

from floworch.model.statuses import RunStatus
from floworch.storage.port import StoreTx
from floworch.storage.records import (
    AttemptRecord,
    ClaimOutcome,
    ClaimResult,
    DispatchRecord,
    EventRecord,
    FlowRecord,
    LoopItem,
    RunQuery,
    RunRecord,
    ScheduleState,
    SignalWaiter,
    StepRecord,
)
from floworch.storage.sql import rows
from floworch.storage.sql import scan_statements as sc
from floworch.storage.sql import statements as st
from floworch.storage.sql.api_store import SqlApiMixin
from floworch.storage.sql.claims import claim_on, renew_on
from floworch.storage.sql.compiled import Stmt
from floworch.storage.sql.database import NO_VALUES, Database, SqlConnection, SqlStats
from floworch.storage.sql.engine import SqlStoreOptions, create_database, create_sync_engine
from floworch.storage.sql.errors import is_retryable, translating
from floworch.storage.sql.leases import SqlLeasesMixin
from floworch.storage.sql.schema import RUN_CHILD_TABLES, flows, runs
from floworch.storage.sql.tx import SqlTx
from floworch.storage.sql.urls import read_only_sqlite_url
from floworch.storage.sql.writes import insert_once, upsert

T = TypeVar("T")

_RETRIES = 3
_FLOW_COLUMNS = ("version", "manifest", "enabled", "updated_at")
_KEYS_PER_STATEMENT = 300
"""Keys per ``IN`` list (three bind parameters each for ledger keys)."""


class SqlStore(SqlApiMixin, SqlLeasesMixin):
    """The store port over one database (see :class:`floworch.storage.port.Store`), and the
    control plane's methods (:class:`floworch.storage.api_port.ApiStore`).

    Use :func:`floworch.storage.factory.open_store` to get one with its schema migrated.
    Transactions run at the database's default isolation (READ COMMITTED on PostgreSQL and SQL
    Server, serialised writers on SQLite); correctness under races comes from the run row lock,
    primary keys and conditional updates, not from isolation levels.
    """

    def __init__(
        self,
        database: Database,
        url: URL,
        options: SqlStoreOptions | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self._db = database
        self._url = url
        self._options = options or SqlStoreOptions()
        self._dialect = database.dialect.name
        self._engine: Engine | None = None
        self.read_only = read_only

    @classmethod
    def from_url(
        cls, url: URL, options: SqlStoreOptions | None = None, *, read_only: bool = False
    ) -> SqlStore:
        """Creates a store for a driver URL (see :func:`~.urls.to_driver_url`); no I/O yet.

        With ``read_only`` the store never writes: a SQLite file is opened with ``mode=ro`` (so
        it is neither created nor altered), a PostgreSQL session is read-only.
        """
        chosen = options or SqlStoreOptions()
        database = create_database(_effective(url, read_only), chosen, read_only=read_only)
        return cls(database, url, chosen, read_only=read_only)

    @property
    def engine(self) -> Engine:
        """A synchronous SQLAlchemy engine on the same database (migrations, tools, tests).

        The store itself does not use it; it opens connections only when used.
        """
        if self._engine is None:
            url = _effective(self._url, self.read_only)
            self._engine = create_sync_engine(url, self._options, pooled=False)
        return self._engine

    @property
    def url(self) -> URL:
        """The database URL (render it with ``hide_password=True``)."""
        return self._url

    @property
    def database(self) -> Database:
        """Where the store's connections come from."""
        return self._db

    @property
    def stats(self) -> SqlStats:
        """Statements, commits and connections so far (the benchmark divides them by steps)."""
        return self._db.stats

    # -- connections and transactions ----------------------------------------------------------

    @asynccontextmanager
    async def _connect(self, *, write: bool) -> AsyncIterator[SqlConnection]:
        """A connection from the database, with errors of getting it translated."""
        manager = self._db.connection(write=write)
        with translating(self._url):
            conn = await manager.__aenter__()
        try:
            yield conn
        except BaseException as exc:
            if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await manager.__aexit__(None, None, None)

    @asynccontextmanager
    async def _begin(
        self, lock_run: str | None = None, steps: Collection[str] = ()
    ) -> AsyncIterator[SqlTx]:
        async with self._connect(write=True) as conn:
            with translating(self._url):
                await conn.begin()
            try:
                if lock_run is None:
                    yield SqlTx(conn, self._url)
                else:
                    yield await SqlTx.locking(conn, self._url, lock_run, steps)
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.rollback()
                raise
            with translating(self._url):
                await conn.commit()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[SqlConnection]:
        """A connection inside a write transaction (committed when the block ends normally)."""
        async with self._begin() as tx:
            yield tx._conn

    def transaction(self) -> AbstractAsyncContextManager[StoreTx]:
        """Opens a write transaction; it commits when the block ends normally."""
        return self._begin(None)

    def run_transaction(
        self, run_id: str, *, steps: Collection[str] = ()
    ) -> AbstractAsyncContextManager[StoreTx]:
        """Opens a transaction that first takes the run's row lock, and reads ``steps`` right
        after it (on PostgreSQL in the same round trip; see :mod:`floworch.storage.sql.tx`).

        Raises:
            RunNotFoundError: the run does not exist.
        """
        return self._begin(run_id, steps)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Runs a self-contained transaction again when it lost a deadlock or serialisation."""
        for tries in range(1, _RETRIES + 1):
            try:
                with translating(self._url):
                    return await attempt()
            except Exception as exc:
                cause = exc.__cause__
                if tries == _RETRIES or cause is None or not is_retryable(cause):
                    raise
                await asyncio.sleep(0.01 * tries)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Closes every connection."""
        await self._db.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- flows ---------------------------------------------------------------------------------

    async def upsert_flow(self, flow: FlowRecord, *, keep_enabled: bool = True) -> FlowRecord:
        values = rows.flow_values(flow)

        async def attempt() -> FlowRecord:
            async with self._begin() as tx:
                conn = tx._conn
                if keep_enabled:
                    if not await insert_once(conn, flows, [values]):
                        changed = ("version", "manifest", "updated_at")
                        changes = {k: values[k] for k in changed} | {"k_flow_id": flow.flow_id}
                        await conn.execute(st.update_by_key(flows, changed), changes)
                else:
                    await upsert(
                        conn, flows, values, ("version", "manifest", "enabled", "updated_at")
                    )
                found = await conn.execute(st.select_by_key(flows), {"k_flow_id": flow.flow_id})
                return rows.to_flow(rows.mapping(found.columns, found.rows[0]))

        return await self._retrying(attempt)

    async def get_flow(self, flow_id: str) -> FlowRecord | None:
        found = await self._fetch(st.select_by_key(flows), {"k_flow_id": flow_id})
        return rows.to_flow(found[0]) if found else None

    async def list_flows(self) -> list[FlowRecord]:
        return [rows.to_flow(r) for r in await self._fetch(st.select_flows())]

    async def set_flow_enabled(self, flow_id: str, enabled: bool, now: datetime) -> bool:
        values = {"flow_id": flow_id, "enabled": enabled, "now": now}
        async with self._connect(write=True) as conn:
            with translating(self._url):
                result = await conn.execute(st.set_flow_enabled(), values)
        return bool(result.rowcount == 1)

    # -- claims --------------------------------------------------------------------------------

    async def claim_step(
        self,
        run_id: str,
        step_key: str,
        seq: int,
        *,
        owner: str,
        lease_until: datetime,
        now: datetime,
        outputs: Collection[str] = (),
    ) -> ClaimResult:
        async def attempt() -> ClaimResult:
            async with self._connect(write=True) as conn:
                return await claim_on(
                    conn,
                    run_id,
                    step_key,
                    seq,
                    owner=owner,
                    lease_until=lease_until,
                    now=now,
                    outputs=outputs,
                )

        return await self._retrying(attempt)

    async def renew_lease(
        self, run_id: str, step_key: str, seq: int, owner: str, lease_until: datetime
    ) -> RunStatus | None:
        async def attempt() -> RunStatus | None:
            async with self._connect(write=True) as conn:
                return await renew_on(conn, run_id, step_key, seq, owner, lease_until)

        return await self._retrying(attempt)

    async def mark_dispatched(
        self, keys: Sequence[tuple[str, str, int]], sent_at: datetime
    ) -> None:
        if not keys:
            return
        async with self._connect(write=True) as conn:
            with translating(self._url):
                if self._dialect in st.ON_CONFLICT_DIALECTS:
                    for start in range(0, len(keys), _KEYS_PER_STATEMENT):
                        chunk = keys[start : start + _KEYS_PER_STATEMENT]
                        values: dict[str, Any] = {"sent_at": sent_at}
                        for i, (run_id, step_key, seq) in enumerate(chunk):
                            values.update({f"r{i}": run_id, f"s{i}": step_key, f"q{i}": seq})
                        # Not flushed on its own: a mark lost to a power loss only makes the
                        # reconciler send the message again, which the claim makes harmless.
                        await conn.execute_unflushed(sc.mark_dispatched_in(len(chunk)), values)
                else:
                    params = [
                        {"run_id": r, "step_key": s, "seq": q, "sent_at": sent_at}
                        for r, s, q in keys
                    ]
                    await conn.execute_many(sc.mark_dispatched_each(), params)

    # -- reads ---------------------------------------------------------------------------------

    async def _fetch(
        self, stmt: Stmt, values: Mapping[str, Any] = NO_VALUES
    ) -> list[dict[str, Any]]:
        async with self._connect(write=False) as conn:
            with translating(self._url):
                result = await conn.execute(stmt, values)
        return rows.mappings(result.columns, result.rows)

    async def get_run(self, run_id: str) -> RunRecord | None:
        found = await self._fetch(st.select_run(), {"run_id": run_id})
        return rows.to_run(found[0]) if found else None

    def _run_query(self, query: RunQuery) -> tuple[dict[str, Any], dict[str, Any]]:
        statuses = sorted(str(s) for s in query.statuses)
        shape = {
            "flow": query.flow_id is not None,
            "statuses": len(statuses),
            "after": query.created_after is not None,
            "before": query.created_before is not None,
        }
        values: dict[str, Any] = {f"st{i}": s for i, s in enumerate(statuses)}
        values.update(
            flow_id=query.flow_id,
            created_after=query.created_after,
            created_before=query.created_before,
        )
        return shape, values

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        shape, values = self._run_query(query)
        values.update(limit=query.limit, offset=query.offset)
        return [rows.to_run(r) for r in await self._fetch(sc.select_runs(**shape), values)]

    async def count_runs(self, query: RunQuery) -> int:
        shape, values = self._run_query(query)
        found = await self._fetch(sc.count_runs(**shape), values)
        return int(next(iter(found[0].values())) or 0) if found else 0

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        stmt = st.select_steps_with_prefix(with_prefix=False)
        return [rows.to_step(r) for r in await self._fetch(stmt, {"run_id": run_id})]

    async def get_attempts(self, run_id: str, step_key: str | None = None) -> list[AttemptRecord]:
        stmt = st.select_attempts(one_step=step_key is not None)
        found = await self._fetch(stmt, {"run_id": run_id, "step_key": step_key})
        return [rows.to_attempt(r) for r in found]

    async def get_outputs(self, run_id: str, keys: Collection[str]) -> dict[str, StepRecord]:
        if not keys:
            return {}
        async with self._connect(write=False) as conn:
            return await SqlTx(conn, self._url).get_steps(run_id, keys)

    async def get_loop_item(self, run_id: str, step_key: str, index: int) -> LoopItem | None:
        values = {"run_id": run_id, "step_key": step_key, "item_index": index}
        found = await self._fetch(st.select_loop_item(), values)
        return LoopItem(found[0]["item"]) if found else None

    async def list_events(
        self, run_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[EventRecord]:
        values = {"run_id": run_id, "after_id": after_id, "limit": limit}
        return [rows.to_event(r) for r in await self._fetch(st.select_events(), values)]

    async def list_waiters(self, run_id: str) -> list[SignalWaiter]:
        found = await self._fetch(st.select_waiters(), {"run_id": run_id})
        return [rows.to_waiter(r) for r in found]

    async def get_schedule_state(self, flow_id: str, trigger_key: str) -> ScheduleState | None:
        from floworch.storage.sql.schema import schedule_states

        values = {"k_flow_id": flow_id, "k_trigger_key": trigger_key}
        found = await self._fetch(st.select_by_key(schedule_states), values)
        return rows.to_schedule(found[0]) if found else None

    async def list_schedule_states(self) -> list[ScheduleState]:
        return [rows.to_schedule(r) for r in await self._fetch(st.select_schedules())]

    # -- reconciler scans ----------------------------------------------------------------------

    async def due_dispatches(
        self,
        now: datetime,
        *,
        unsent_grace_until: datetime,
        sent_stuck_before: datetime,
        limit: int,
    ) -> list[DispatchRecord]:
        values = {
            "unsent_grace_until": unsent_grace_until,
            "sent_stuck_before": sent_stuck_before,
            "limit": limit,
        }

        async def attempt() -> list[DispatchRecord]:
            async with self._begin() as tx:
                await tx._conn.execute(sc.delete_settled_dispatches())
                result = await tx._conn.execute(sc.select_due_dispatches(), values)
                return [rows.to_dispatch(r) for r in rows.mappings(result.columns, result.rows)]

        return await self._retrying(attempt)

    async def expired_leases(self, now: datetime, *, limit: int) -> list[StepRecord]:
        found = await self._fetch(sc.select_expired_leases(), {"now": now, "limit": limit})
        return [rows.to_step(r) for r in found]

    async def runs_past_timeout(self, now: datetime, *, limit: int) -> list[RunRecord]:
        found = await self._fetch(sc.select_runs_past_timeout(), {"now": now, "limit": limit})
        return [rows.to_run(r) for r in found]

    async def unfinished_runs(self, *, limit: int, after_run_id: str = "") -> list[RunRecord]:
        values = {"after_run_id": after_run_id, "limit": limit}
        return [rows.to_run(r) for r in await self._fetch(sc.select_unfinished_runs(), values)]

    # -- retention -----------------------------------------------------------------------------

    async def prune_runs(self, completed_before: datetime, *, batch_size: int) -> int:
        values = {"completed_before": completed_before, "limit": batch_size}

        async def attempt() -> int:
            async with self._begin() as tx:
                conn = tx._conn
                found = await conn.execute(sc.select_prunable_runs(), values)
                doomed = [row[0] for row in found.rows]
                for start in range(0, len(doomed), _KEYS_PER_STATEMENT):
                    chunk = doomed[start : start + _KEYS_PER_STATEMENT]
                    keyed = {f"r{i}": run_id for i, run_id in enumerate(chunk)}
                    for table in (*RUN_CHILD_TABLES, runs):
                        await conn.execute(sc.delete_by_runs(table, len(chunk)), keyed)
                return len(doomed)

        return await self._retrying(attempt)


def _effective(url: URL, read_only: bool) -> URL:
    """The URL connections use: a read-only store opens a SQLite file with ``mode=ro``."""
    if read_only and url.get_backend_name() == "sqlite":
        return read_only_sqlite_url(url)
    return url


__all__ = ["ClaimOutcome", "SqlStore", "SqlStoreOptions"]
