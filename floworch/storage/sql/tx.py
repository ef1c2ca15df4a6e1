"""``SqlTx``: the store port's transaction operations over one SQLAlchemy async connection."""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine, Sequence
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from floworch.errors import RunNotFoundError
from floworch.model.statuses import RunStatus
from floworch.storage.records import (
    JSON,
    AttemptRecord,
    DispatchRecord,
    EventRecord,
    RunRecord,
    ScheduleState,
    SignalOutcome,
    SignalWaiter,
    StepChanges,
    StepRecord,
)
from floworch.storage.sql import rows
from floworch.storage.sql import schema as t
from floworch.storage.sql import statements as st
from floworch.storage.sql.errors import translating
from floworch.storage.sql.writes import insert_once, upsert

P = ParamSpec("P")
R = TypeVar("R")


def translated(
    method: Callable[Concatenate[SqlTx, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SqlTx, P], Coroutine[Any, Any, R]]:
    """Runs a transaction method with driver errors translated to floworch storage errors."""

    async def wrapper(self: SqlTx, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with translating(self._url):
            return await method(self, *args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__qualname__ = method.__qualname__
    wrapper.__doc__ = method.__doc__
    return wrapper


_SCHEDULE_COLUMNS = (
    "paused",
    "cron_override",
    "last_fire_at",
    "next_fire_at",
    "pending_sequence_number",
    "updated_at",
)


class SqlTx:
    """A transaction over the SQL store (see :class:`floworch.storage.port.StoreTx`).

    Every write is visible only inside this transaction until the owning context manager
    commits; nothing here commits or rolls back by itself.
    """

    def __init__(self, conn: AsyncConnection, url: URL) -> None:
        self._conn = conn
        self._url = url

    # -- runs ----------------------------------------------------------------------------------

    @translated
    async def insert_run(self, run: RunRecord) -> None:
        await self._conn.execute(st.insert_rows(t.runs), rows.run_values(run))

    @translated
    async def get_run(self, run_id: str) -> RunRecord | None:
        row = (await self._conn.execute(st.select_run(run_id))).mappings().first()
        return None if row is None else rows.to_run(row)

    @translated
    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | None = None,
        remaining_delta: int = 0,
        completed_at: datetime | None = None,
        cancel_reason: str | None = None,
        clear_completed: bool = False,
        seq_floor: int | None = None,
    ) -> RunRecord:
        stmt = st.update_run(
            run_id,
            status=status,
            remaining_delta=remaining_delta,
            completed_at=completed_at,
            cancel_reason=cancel_reason,
            clear_completed=clear_completed,
            seq_floor=seq_floor,
        )
        row = (await self._conn.execute(stmt)).mappings().first()
        if row is None:
            raise RunNotFoundError(run_id)
        return rows.to_run(row)

    # -- idempotency ---------------------------------------------------------------------------

    @translated
    async def claim_idempotency_key(
        self, flow_id: str, trigger_key: str, key: str, run_id: str, now: datetime
    ) -> str | None:
        row = {
            "flow_id": flow_id,
            "trigger_key": trigger_key,
            "idempotency_key": key,
            "run_id": run_id,
            "created_at": now,
        }
        if await insert_once(self._conn, t.idempotency_keys, [row]):
            return None
        owner = await self._conn.scalar(st.select_idempotency_owner(flow_id, trigger_key, key))
        return str(owner)

    # -- steps ---------------------------------------------------------------------------------

    @translated
    async def insert_steps(self, steps: Sequence[StepRecord]) -> None:
        if steps:
            await self._conn.execute(
                st.insert_rows(t.steps), [rows.step_values(step) for step in steps]
            )

    @translated
    async def get_steps(self, run_id: str, keys: Collection[str]) -> dict[str, StepRecord]:
        if not keys:
            return {}
        result = await self._conn.execute(st.select_steps(run_id, keys))
        return {row["step_key"]: rows.to_step(row) for row in result.mappings()}

    @translated
    async def get_steps_with_prefix(self, run_id: str, prefix: str) -> list[StepRecord]:
        result = await self._conn.execute(st.select_steps_with_prefix(run_id, prefix))
        # LIKE may be case-insensitive on some collations; the prefix test here is exact.
        return [rows.to_step(r) for r in result.mappings() if r["step_key"].startswith(prefix)]

    @translated
    async def update_step(
        self,
        run_id: str,
        step_key: str,
        changes: StepChanges,
        *,
        expect_seq: int | None = None,
        expect_statuses: Collection[str] | None = None,
    ) -> StepRecord | None:
        values = rows.step_change_values(changes)
        if not values:
            # Nothing to write: still honour the expectations by reading the row.
            found = await self.get_steps(run_id, [step_key])
            step = found.get(step_key)
            if step is None or (expect_seq is not None and step.seq != expect_seq):
                return None
            if expect_statuses is not None and step.status not in expect_statuses:
                return None
            return step
        stmt = st.update_step(
            run_id, step_key, values, expect_seq=expect_seq, expect_statuses=expect_statuses
        )
        row = (await self._conn.execute(stmt)).mappings().first()
        return None if row is None else rows.to_step(row)

    @translated
    async def delete_steps(self, run_id: str, keys: Collection[str]) -> None:
        if not keys:
            return
        # Claims first: claim_step writes claims before steps, so the same order avoids deadlocks.
        for table in (t.claims, t.signal_waiters, t.steps):
            await self._conn.execute(st.delete_step_rows(table, run_id, keys))

    @translated
    async def insert_attempt(self, attempt: AttemptRecord) -> None:
        await self._conn.execute(st.insert_rows(t.step_attempts), rows.attempt_values(attempt))

    # -- dispatch ledger -----------------------------------------------------------------------

    @translated
    async def record_dispatches(self, dispatches: Sequence[DispatchRecord]) -> list[DispatchRecord]:
        values = [rows.dispatch_values(d) for d in dispatches]
        fresh = await insert_once(self._conn, t.dispatches, values)
        return [dispatches[i] for i in fresh]

    # -- signals -------------------------------------------------------------------------------

    @translated
    async def register_waiter(self, waiter: SignalWaiter) -> JSON | None:
        buffered = (
            (await self._conn.execute(st.select_buffered(waiter.run_id, waiter.signal_name)))
            .mappings()
            .first()
        )
        if buffered is not None and buffered["consumed_at"] is None:
            consumed = await self._conn.execute(
                st.consume_buffered(waiter.run_id, waiter.signal_name, waiter.created_at)
            )
            if consumed.rowcount == 1:
                values = rows.waiter_values(waiter)
                values.update(delivered_at=waiter.created_at, payload=buffered["payload"])
                await upsert(self._conn, t.signal_waiters, values, _WAITER_COLUMNS)
                return {"payload": buffered["payload"]}
        values = rows.waiter_values(waiter)
        existing = await self._conn.scalar(
            st.select_waiter_created_at(waiter.run_id, waiter.step_key)
        )
        if existing is not None:
            # Registering again keeps the original creation time (idempotent re-registration).
            values["created_at"] = existing
        await upsert(self._conn, t.signal_waiters, values, _WAITER_COLUMNS)
        return None

    @translated
    async def deliver_signal(
        self, run_id: str, signal_name: str, payload: JSON, now: datetime
    ) -> tuple[str, str | None]:
        waiters = (
            await self._conn.execute(st.select_waiters_for_signal(run_id, signal_name))
        ).all()
        delivered_key: str | None = None
        for step_key, delivered_at in waiters:
            if delivered_at is None:
                result = await self._conn.execute(
                    st.deliver_to_waiter(run_id, step_key, payload, now)
                )
                if result.rowcount == 1:
                    return SignalOutcome.DELIVERED, step_key
            delivered_key = step_key
        if delivered_key is not None:
            return SignalOutcome.ALREADY_DELIVERED, delivered_key
        row = {
            "run_id": run_id,
            "signal_name": signal_name,
            "payload": payload,
            "received_at": now,
            "consumed_at": None,
        }
        if await insert_once(self._conn, t.buffered_signals, [row]):
            return SignalOutcome.BUFFERED, None
        return SignalOutcome.ALREADY_DELIVERED, None

    @translated
    async def remove_waiter(self, run_id: str, step_key: str) -> None:
        await self._conn.execute(st.delete_step_rows(t.signal_waiters, run_id, [step_key]))

    # -- events --------------------------------------------------------------------------------

    @translated
    async def append_events(self, events: Sequence[EventRecord]) -> None:
        if events:
            await self._conn.execute(
                st.insert_rows(t.events), [rows.event_values(event) for event in events]
            )

    # -- schedules -----------------------------------------------------------------------------

    @translated
    async def get_schedule_state(self, flow_id: str, trigger_key: str) -> ScheduleState | None:
        found = (
            (await self._conn.execute(st.select_schedule_for_update(flow_id, trigger_key)))
            .mappings()
            .first()
        )
        return rows.to_schedule(found) if found else None

    @translated
    async def put_schedule_state(self, state: ScheduleState) -> None:
        await upsert(self._conn, t.schedule_states, rows.schedule_values(state), _SCHEDULE_COLUMNS)

    @translated
    async def record_cron_fire(
        self, flow_id: str, trigger_key: str, fire_time: datetime, run_id: str | None
    ) -> bool:
        row = st.cron_fire_key(flow_id, trigger_key, fire_time) | {"run_id": run_id}
        return bool(await insert_once(self._conn, t.cron_fires, [row]))


_WAITER_COLUMNS = ("signal_name", "created_at", "expires_at", "delivered_at", "payload")
