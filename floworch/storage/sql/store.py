"""``SqlStore``: the store port on SQLAlchemy Core (SQLite, PostgreSQL, SQL Server)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from floworch.errors import RunNotFoundError
from floworch.model.statuses import RunStatus
from floworch.storage.port import StoreTx
from floworch.storage.records import (
    AttemptRecord,
    ClaimOutcome,
    ClaimResult,
    DispatchRecord,
    EventRecord,
    FlowRecord,
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
from floworch.storage.sql.claims import ClaimRefused, claim_in, renew_in
from floworch.storage.sql.engine import (
    AUTOCOMMIT_OPTION,
    WRITE_OPTION,
    SqlStoreOptions,
    create_engine_for,
)
from floworch.storage.sql.errors import is_retryable, translating
from floworch.storage.sql.schema import RUN_CHILD_TABLES, flows, runs, schedule_states
from floworch.storage.sql.tx import SqlTx
from floworch.storage.sql.writes import insert_once, upsert

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRIES = 3
_MARK_CHUNK = 300
"""Ledger keys per ``mark_dispatched`` statement (three bind parameters each)."""


class SqlStore(SqlApiMixin):
    """The store port over one database (see :class:`floworch.storage.port.Store`), and the
    control plane's methods (:class:`floworch.storage.api_port.ApiStore`).

    Use :func:`floworch.storage.factory.open_store` to get one with its schema migrated.
    Transactions run at the database's default isolation (READ COMMITTED on PostgreSQL and SQL
    Server, serialised writers on SQLite); correctness under races comes from the run row lock,
    primary keys and conditional updates, not from isolation levels.
    """

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self._engine = engine
        self._url = url
        self._dialect = engine.dialect.name
        self._write = engine.execution_options(**{WRITE_OPTION: True})
        if self._dialect == "sqlite":
            self._auto = engine.execution_options(**{AUTOCOMMIT_OPTION: True})
        else:
            self._auto = engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def from_url(cls, url: URL, options: SqlStoreOptions | None = None) -> SqlStore:
        """Creates a store (and its connection pool) for an async-driver URL; no I/O yet."""
        return cls(create_engine_for(url, options or SqlStoreOptions()), url)

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (for migrations, benchmarks and tests)."""
        return self._engine

    @property
    def url(self) -> URL:
        """The database URL (render it with ``hide_password=True``)."""
        return self._url

    # -- transactions --------------------------------------------------------------------------

    @asynccontextmanager
    async def _begin(self, lock_run: str | None = None) -> AsyncIterator[AsyncConnection]:
        with translating(self._url):
            conn = await self._write.connect()
        try:
            with translating(self._url):
                await conn.begin()
                if lock_run is not None:
                    locked = await conn.execute(st.lock_run(lock_run))
                    if locked.rowcount == 0:
                        raise RunNotFoundError(lock_run)
            yield conn
            with translating(self._url):
                await conn.commit()
        finally:
            await self._close(conn)

    async def _close(self, conn: AsyncConnection) -> None:
        # Closing rolls back whatever did not commit. A dead connection may fail to close; the
        # error that killed it is already on its way to the caller, which is the useful one.
        try:
            await conn.close()
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            log.debug("closing a failed connection to %s: %s", self._url.host, exc)

    @asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        with translating(self._url):
            async with self._auto.connect() as conn:
                yield conn

    def transaction(self) -> AbstractAsyncContextManager[StoreTx]:
        """Opens a write transaction; it commits when the block ends normally."""
        return self._tx(None)

    def run_transaction(self, run_id: str) -> AbstractAsyncContextManager[StoreTx]:
        """Opens a transaction that first takes the run's row lock.

        Raises:
            RunNotFoundError: the run does not exist.
        """
        return self._tx(run_id)

    @asynccontextmanager
    async def _tx(self, lock_run: str | None) -> AsyncIterator[StoreTx]:
        async with self._begin(lock_run=lock_run) as conn:
            yield SqlTx(conn, self._url)

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
        """Closes every pooled connection."""
        await self._engine.dispose()

    # -- flows ---------------------------------------------------------------------------------

    async def upsert_flow(self, flow: FlowRecord, *, keep_enabled: bool = True) -> FlowRecord:
        values = rows.flow_values(flow)

        async def attempt() -> FlowRecord:
            async with self._begin() as conn:
                if keep_enabled:
                    if not await insert_once(conn, flows, [values]):
                        changes = {k: values[k] for k in ("version", "manifest", "updated_at")}
                        await conn.execute(
                            st.update_by_key(flows, {"flow_id": flow.flow_id}, changes)
                        )
                else:
                    await upsert(
                        conn, flows, values, ("version", "manifest", "enabled", "updated_at")
                    )
                row = await conn.execute(st.select_by_key(flows, {"flow_id": flow.flow_id}))
                return rows.to_flow(row.mappings().one())

        return await self._retrying(attempt)

    async def get_flow(self, flow_id: str) -> FlowRecord | None:
        async with self._autocommit() as conn:
            row = (await conn.execute(st.select_by_key(flows, {"flow_id": flow_id}))).mappings()
            found = row.first()
        return None if found is None else rows.to_flow(found)

    async def list_flows(self) -> list[FlowRecord]:
        async with self._autocommit() as conn:
            result = await conn.execute(st.select_flows())
            return [rows.to_flow(r) for r in result.mappings()]

    async def set_flow_enabled(self, flow_id: str, enabled: bool, now: datetime) -> bool:
        async with self._autocommit() as conn:
            result = await conn.execute(st.set_flow_enabled(flow_id, enabled, now))
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
    ) -> ClaimResult:
        async def attempt() -> ClaimResult:
            try:
                async with self._begin() as conn:
                    return await claim_in(
                        conn, run_id, step_key, seq, owner=owner, lease_until=lease_until, now=now
                    )
            except ClaimRefused as refused:
                return ClaimResult(refused.outcome)

        return await self._retrying(attempt)

    async def renew_lease(
        self, run_id: str, step_key: str, seq: int, owner: str, lease_until: datetime
    ) -> RunStatus | None:
        async def attempt() -> RunStatus | None:
            try:
                async with self._begin() as conn:
                    return await renew_in(conn, run_id, step_key, seq, owner, lease_until)
            except ClaimRefused:
                return None

        return await self._retrying(attempt)

    async def mark_dispatched(
        self, keys: Sequence[tuple[str, str, int]], sent_at: datetime
    ) -> None:
        if not keys:
            return
        async with self._autocommit() as conn:
            if self._dialect in st.ON_CONFLICT_DIALECTS:
                for start in range(0, len(keys), _MARK_CHUNK):
                    chunk = keys[start : start + _MARK_CHUNK]
                    await conn.execute(sc.mark_dispatched_in(chunk, sent_at))
            else:
                params = [
                    {"k_run": r, "k_step": s, "k_seq": q, "k_sent": sent_at} for r, s, q in keys
                ]
                await conn.execute(sc.mark_dispatched_each(), params)

    # -- reads ---------------------------------------------------------------------------------

    async def _fetch(self, stmt: Any) -> list[Any]:
        async with self._autocommit() as conn:
            return list((await conn.execute(stmt)).mappings().all())

    async def get_run(self, run_id: str) -> RunRecord | None:
        found = await self._fetch(st.select_run(run_id))
        return rows.to_run(found[0]) if found else None

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        return [rows.to_run(r) for r in await self._fetch(sc.select_runs(query))]

    async def count_runs(self, query: RunQuery) -> int:
        async with self._autocommit() as conn:
            return int(await conn.scalar(sc.count_runs(query)) or 0)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        return [rows.to_step(r) for r in await self._fetch(st.select_all_steps(run_id))]

    async def get_attempts(self, run_id: str, step_key: str | None = None) -> list[AttemptRecord]:
        return [rows.to_attempt(r) for r in await self._fetch(st.select_attempts(run_id, step_key))]

    async def get_outputs(self, run_id: str, keys: Collection[str]) -> dict[str, StepRecord]:
        if not keys:
            return {}
        found = await self._fetch(st.select_steps(run_id, keys))
        return {r["step_key"]: rows.to_step(r) for r in found}

    async def list_events(
        self, run_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[EventRecord]:
        return [
            rows.to_event(r) for r in await self._fetch(st.select_events(run_id, after_id, limit))
        ]

    async def list_waiters(self, run_id: str) -> list[SignalWaiter]:
        return [rows.to_waiter(r) for r in await self._fetch(st.select_waiters(run_id))]

    async def get_schedule_state(self, flow_id: str, trigger_key: str) -> ScheduleState | None:
        key = {"flow_id": flow_id, "trigger_key": trigger_key}
        found = await self._fetch(st.select_by_key(schedule_states, key))
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
        async def attempt() -> list[DispatchRecord]:
            async with self._begin() as conn:
                await conn.execute(sc.delete_settled_dispatches())
                result = await conn.execute(
                    sc.select_due_dispatches(
                        unsent_grace_until=unsent_grace_until,
                        sent_stuck_before=sent_stuck_before,
                        limit=limit,
                    )
                )
                return [rows.to_dispatch(r) for r in result.mappings()]

        return await self._retrying(attempt)

    async def expired_leases(self, now: datetime, *, limit: int) -> list[StepRecord]:
        return [rows.to_step(r) for r in await self._fetch(sc.select_expired_leases(now, limit))]

    async def runs_past_timeout(self, now: datetime, *, limit: int) -> list[RunRecord]:
        return [rows.to_run(r) for r in await self._fetch(sc.select_runs_past_timeout(now, limit))]

    async def unfinished_runs(self, *, limit: int, after_run_id: str = "") -> list[RunRecord]:
        found = await self._fetch(sc.select_unfinished_runs(limit, after_run_id))
        return [rows.to_run(r) for r in found]

    # -- retention -----------------------------------------------------------------------------

    async def prune_runs(self, completed_before: datetime, *, batch_size: int) -> int:
        async def attempt() -> int:
            async with self._begin() as conn:
                result = await conn.execute(sc.select_prunable_runs(completed_before, batch_size))
                doomed = [row[0] for row in result]
                if doomed:
                    for table in (*RUN_CHILD_TABLES, runs):
                        await conn.execute(sc.delete_by_runs(table, doomed))
                return len(doomed)

        return await self._retrying(attempt)


__all__ = ["ClaimOutcome", "SqlStore", "SqlStoreOptions"]
