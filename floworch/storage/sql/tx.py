"""``SqlTx``: the store port's transaction operations over one connection in a transaction.

A run this transaction locked, inserted or updated is kept as the database returned it (the
row lock or the insert keeps others from changing it until commit), so ``get_run`` of that run
costs no statement: the engine reads the run right after taking its lock. For the same reason
``update_run`` of such a run knows the new row without reading it back.

Step rows of the locked run read right after its lock (``run_transaction(run_id, steps=...)``,
one round trip with the lock on PostgreSQL) are kept as well; a run this transaction inserted
counts as locked (nobody else sees it, or can touch its steps, before commit). While the run's
lock is held, another transaction can still claim such a row (Pending or Waiting to Running, or
a lapsed Running one to a new owner) and renew its lease, but nothing else: step rows are
inserted, deleted, finished, parked and dispatched again only under the run's lock. So which of
those rows exist, a terminal row, and a Running row's status and seq stay as read until commit.
``get_steps`` answers from them, and ``update_step`` of a kept Running row at the expected seq
sends its write without waiting for an answer: it cannot miss.

Writes whose result the engine does not read (new step rows, attempts, events, a known run's
update, such a step update, and the ledger rows of steps this transaction created) are sent with
:meth:`SqlConnection.execute_later`: on PostgreSQL they travel with the transaction's next
statement or its commit, in one round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.engine import URL

from floworch.errors import RunNotFoundError
from floworch.model.statuses import RunStatus, StepStatus
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
    apply_changes,
)
from floworch.storage.sql import rows
from floworch.storage.sql import schema as t
from floworch.storage.sql import statements as st
from floworch.storage.sql.compiled import Stmt
from floworch.storage.sql.database import SqlConnection
from floworch.storage.sql.errors import translating
from floworch.storage.sql.writes import (
    insert_later_skipping_duplicates,
    insert_once,
    insert_rows,
    upsert,
)

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
_WAITER_COLUMNS = ("signal_name", "created_at", "expires_at", "delivered_at", "payload")
_RUN_FIELDS = ("status", "completed_at", "cancel_reason", "seq_floor")


def _keyed(prefix: str, keys: Sequence[str]) -> dict[str, str]:
    return {f"{prefix}{i}": key for i, key in enumerate(keys)}


class SqlTx:
    """A transaction over the SQL store (see :class:`floworch.storage.port.StoreTx`).

    Every write is visible only inside this transaction until the owning context manager
    commits; nothing here commits or rolls back by itself.
    """

    def __init__(
        self,
        conn: SqlConnection,
        url: URL,
        locked: RunRecord | None = None,
        steps: Mapping[str, StepRecord | None] | None = None,
    ) -> None:
        self._conn = conn
        self._url = url
        self._runs: dict[str, RunRecord] = {} if locked is None else {locked.run_id: locked}
        self._locked = None if locked is None else locked.run_id
        # Rows of the locked run read after its lock (None: no such row); see the module doc.
        self._steps: dict[str, StepRecord | None] = dict(steps or {})
        # (step key, seq) of the rows this transaction inserted: no ledger row can have them yet.
        self._created: set[tuple[str, int]] = set()

    @classmethod
    async def locking(
        cls, conn: SqlConnection, url: URL, run_id: str, steps: Collection[str]
    ) -> SqlTx:
        """Takes the lock of ``run_id`` in the transaction ``conn`` has begun and reads
        ``steps`` of that run after it (one round trip on PostgreSQL).

        Raises:
            RunNotFoundError: the run does not exist.
        """
        batch: list[tuple[Stmt, Mapping[str, Any]]] = [(st.lock_run(), {"run_id": run_id})]
        batch += st.step_reads(run_id, steps)
        with translating(url):
            results = await conn.execute_all(batch)
        row = results[0].first()
        if row is None:
            raise RunNotFoundError(run_id)
        known: dict[str, StepRecord | None] = dict.fromkeys(steps)
        for result in results[1:]:
            known.update(rows.steps_in(result.columns, result.rows))
        return cls(conn, url, rows.to_run(rows.mapping(results[0].columns, row)), known)

    # -- runs ----------------------------------------------------------------------------------

    @translated
    async def insert_run(self, run: RunRecord) -> None:
        await insert_rows(self._conn, t.runs, [rows.run_values(run)], later=True)
        self._runs[run.run_id] = run
        if self._locked is None:
            # Nobody else sees the run before commit: this transaction holds it as if locked.
            self._locked = run.run_id

    @translated
    async def get_run(self, run_id: str) -> RunRecord | None:
        known = self._runs.get(run_id)
        if known is not None:
            return known
        found = await self._conn.execute(st.select_run(), {"run_id": run_id})
        row = found.first()
        return None if row is None else rows.to_run(rows.mapping(found.columns, row))

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
        values: dict[str, Any] = {"run_id": run_id, "delta": remaining_delta}
        if seq_floor is not None:
            values["seq_floor"] = seq_floor
        if status is not None:
            values["status"] = str(status)
        if completed_at is not None and not clear_completed:
            values["completed_at"] = completed_at
        if cancel_reason is not None:
            values["cancel_reason"] = cancel_reason
        changed = tuple(name for name in _RUN_FIELDS if name in values)
        stmt = st.update_run(changed, clear_completed=clear_completed)
        known = self._runs.get(run_id)
        if known is not None:
            # Locked or inserted by this transaction: nobody else changes the row before commit.
            run = replace(
                known,
                remaining=known.remaining + remaining_delta,
                status=known.status if status is None else status,
                completed_at=None if clear_completed else completed_at or known.completed_at,
                cancel_reason=known.cancel_reason if cancel_reason is None else cancel_reason,
                seq_floor=known.seq_floor if seq_floor is None else seq_floor,
            )
            await self._conn.execute_later(stmt, values)
            self._runs[run_id] = run
            return run
        found = await self._conn.execute(stmt, values)
        row = found.first()
        if row is None:
            raise RunNotFoundError(run_id)
        run = rows.to_run(rows.mapping(found.columns, row))
        self._runs[run_id] = run
        return run

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
        values = {"flow_id": flow_id, "trigger_key": trigger_key, "key": key}
        owner = (await self._conn.execute(st.select_idempotency_owner(), values)).scalar()
        return str(owner)

    # -- steps ---------------------------------------------------------------------------------

    @translated
    async def insert_steps(self, steps: Sequence[StepRecord]) -> None:
        await insert_rows(
            self._conn, t.steps, [rows.step_values(step) for step in steps], later=True
        )
        for step in steps:
            if step.run_id == self._locked:
                self._steps.pop(step.step_key, None)
                self._created.add((step.step_key, step.seq))

    @translated
    async def get_steps(self, run_id: str, keys: Collection[str]) -> dict[str, StepRecord]:
        wanted = list(dict.fromkeys(keys))
        if run_id == self._locked and all(key in self._steps for key in wanted):
            return {key: row for key in wanted if (row := self._steps[key]) is not None}
        return await self._read_steps(run_id, wanted)

    async def _read_steps(self, run_id: str, wanted: Collection[str]) -> dict[str, StepRecord]:
        found: dict[str, StepRecord] = {}
        for stmt, values in st.step_reads(run_id, wanted):
            result = await self._conn.execute(stmt, values)
            found.update(rows.steps_in(result.columns, result.rows))
        return found

    @translated
    async def get_steps_with_prefix(self, run_id: str, prefix: str) -> list[StepRecord]:
        values: dict[str, Any] = {"run_id": run_id}
        if prefix:
            values["pattern"] = st.like_prefix(prefix)
        stmt = st.select_steps_with_prefix(with_prefix=bool(prefix))
        result = await self._conn.execute(stmt, values)
        # LIKE may be case-insensitive on some collations; the prefix test here is exact.
        return [
            rows.to_step(r)
            for r in rows.mappings(result.columns, result.rows)
            if r["step_key"].startswith(prefix)
        ]

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
        changed = rows.step_change_values(changes)
        if not changed:
            # Nothing to write: still honour the expectations by reading the row.
            step = (await self._read_steps(run_id, [step_key])).get(step_key)
            if step is None or (expect_seq is not None and step.seq != expect_seq):
                return None
            if expect_statuses is not None and step.status not in expect_statuses:
                return None
            return step
        names = tuple(sorted(changed))
        values: dict[str, Any] = {"run_id": run_id, "step_key": step_key}
        values.update((f"v_{name}", changed[name]) for name in names)
        statuses = None
        if expect_seq is not None:
            values["expect_seq"] = expect_seq
        if expect_statuses is not None:
            wanted = [str(s) for s in expect_statuses]
            statuses = len(wanted)
            values.update(_keyed("s", wanted))
        stmt = st.update_step(names, expect_seq=expect_seq is not None, expect_statuses=statuses)
        kept = self._steps.get(step_key) if run_id == self._locked else None
        if (
            kept is not None
            and kept.status == StepStatus.RUNNING
            and (expect_seq is None or kept.seq == expect_seq)
            and (expect_statuses is None or StepStatus.RUNNING in expect_statuses)
        ):
            # Running at this seq under the run's lock: only this transaction can move it.
            await self._conn.execute_later(stmt, values)
            updated: StepRecord | None = apply_changes(kept, changes)
        else:
            result = await self._conn.execute(stmt, values)
            row = result.first()
            updated = None if row is None else rows.to_step(rows.mapping(result.columns, row))
        if run_id == self._locked and step_key in self._steps:
            if updated is None:
                del self._steps[step_key]  # it exists all the same: read it again when asked
            else:
                self._steps[step_key] = updated
        return updated

    @translated
    async def delete_steps(self, run_id: str, keys: Collection[str]) -> None:
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), st.KEYS_PER_STATEMENT):
            chunk = wanted[start : start + st.KEYS_PER_STATEMENT]
            values = {"run_id": run_id, **_keyed("k", chunk)}
            # Claims of the first schema revision go too, then waiters, loop items, the steps.
            for table in (t.claims, t.signal_waiters, t.loop_items, t.steps):
                await self._conn.execute(st.delete_step_rows(table, len(chunk)), values)
        if run_id == self._locked:
            for key in wanted:
                self._steps[key] = None
            self._created = {(key, seq) for key, seq in self._created if key not in keys}

    @translated
    async def insert_attempt(self, attempt: AttemptRecord) -> None:
        await insert_rows(self._conn, t.step_attempts, [rows.attempt_values(attempt)], later=True)

    @translated
    async def put_loop_items(self, run_id: str, step_key: str, items: Sequence[JSON]) -> None:
        key = {"run_id": run_id, "k0": step_key}
        await self._conn.execute(st.delete_step_rows(t.loop_items, 1), key)
        values = [
            {"run_id": run_id, "step_key": step_key, "item_index": index, "item": item}
            for index, item in enumerate(items)
        ]
        await insert_rows(self._conn, t.loop_items, values)

    # -- dispatch ledger -----------------------------------------------------------------------

    @translated
    async def record_dispatches(self, dispatches: Sequence[DispatchRecord]) -> list[DispatchRecord]:
        first = [
            d
            for d in dispatches
            if d.run_id == self._locked and (d.step_key, d.seq) in self._created
        ]
        if len(first) == len(dispatches) and self._conn.dialect_name in st.ON_CONFLICT_DIALECTS:
            # The first dispatches of rows this transaction created: new by construction (a
            # recreated step starts above every seq its run used), so nothing needs reading.
            await insert_later_skipping_duplicates(
                self._conn, t.dispatches, [rows.dispatch_values(d) for d in dispatches]
            )
            self._created.difference_update((d.step_key, d.seq) for d in dispatches)
            once: dict[tuple[str, int], DispatchRecord] = {}
            for d in dispatches:
                once.setdefault((d.step_key, d.seq), d)  # a key repeated in the batch: once
            return list(once.values())
        values = [rows.dispatch_values(d) for d in dispatches]
        fresh = await insert_once(self._conn, t.dispatches, values)
        return [dispatches[i] for i in fresh]

    # -- signals -------------------------------------------------------------------------------

    @translated
    async def register_waiter(self, waiter: SignalWaiter) -> JSON | None:
        key = {"run_id": waiter.run_id, "signal_name": waiter.signal_name}
        found = await self._conn.execute(st.select_buffered(), key)
        buffered = rows.mappings(found.columns, found.rows)
        if buffered and buffered[0]["consumed_at"] is None:
            consumed = await self._conn.execute(
                st.consume_buffered(), {**key, "now": waiter.created_at}
            )
            if consumed.rowcount == 1:
                values = rows.waiter_values(waiter)
                values.update(delivered_at=waiter.created_at, payload=buffered[0]["payload"])
                await upsert(self._conn, t.signal_waiters, values, _WAITER_COLUMNS)
                return {"payload": buffered[0]["payload"]}
        values = rows.waiter_values(waiter)
        existing = (
            await self._conn.execute(
                st.select_waiter_created_at(),
                {"run_id": waiter.run_id, "step_key": waiter.step_key},
            )
        ).scalar()
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
            await self._conn.execute(
                st.select_waiters_for_signal(), {"run_id": run_id, "signal_name": signal_name}
            )
        ).rows
        delivered_key: str | None = None
        for step_key, delivered_at in waiters:
            if delivered_at is None:
                result = await self._conn.execute(
                    st.deliver_to_waiter(),
                    {"run_id": run_id, "step_key": step_key, "payload": payload, "now": now},
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
        values = {"run_id": run_id, "k0": step_key}
        await self._conn.execute(st.delete_step_rows(t.signal_waiters, 1), values)

    # -- events --------------------------------------------------------------------------------

    @translated
    async def append_events(self, events: Sequence[EventRecord]) -> None:
        values = [rows.event_values(event) for event in events]
        await insert_rows(self._conn, t.events, values, later=True)

    # -- schedules -----------------------------------------------------------------------------

    @translated
    async def get_schedule_state(self, flow_id: str, trigger_key: str) -> ScheduleState | None:
        found = await self._conn.execute(
            st.select_schedule_for_update(), {"flow_id": flow_id, "trigger_key": trigger_key}
        )
        row = found.first()
        return rows.to_schedule(rows.mapping(found.columns, row)) if row else None

    @translated
    async def put_schedule_state(self, state: ScheduleState) -> None:
        await upsert(self._conn, t.schedule_states, rows.schedule_values(state), _SCHEDULE_COLUMNS)

    @translated
    async def record_cron_fire(
        self, flow_id: str, trigger_key: str, fire_time: datetime, run_id: str | None
    ) -> bool:
        row = {
            "flow_id": flow_id,
            "trigger_key": trigger_key,
            "fire_time": fire_time,
            "run_id": run_id,
        }
        return bool(await insert_once(self._conn, t.cron_fires, [row]))
