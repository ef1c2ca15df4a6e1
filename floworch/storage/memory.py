"""The in-memory store: the reference adapter of the store port, for tests and embedded use.

State lives in dicts owned by one event loop. A transaction applies writes at once and keeps an
undo log, so an exception inside ``async with store.transaction()`` rolls everything back, as a
database would. ``run_transaction`` serialises the writers of one run with a per-run lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from floworch.errors import ConflictError, RunNotFoundError
from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.leases import MemoryLeases
from floworch.storage.memory_api import MemoryApiMixin, WebhookLog
from floworch.storage.records import (
    JSON,
    AttemptRecord,
    BufferedSignal,
    ClaimOutcome,
    ClaimResult,
    DispatchRecord,
    EventRecord,
    FlowRecord,
    LoopItem,
    RunQuery,
    RunRecord,
    ScheduleState,
    SignalOutcome,
    SignalWaiter,
    StepChanges,
    StepRecord,
    apply_changes,
)

_PARKED = (StepStatus.PENDING, StepStatus.WAITING)
_LedgerKey = tuple[str, str, int]


class _State:
    """Everything the memory store holds."""

    def __init__(self) -> None:
        self.flows: dict[str, FlowRecord] = {}
        self.runs: dict[str, RunRecord] = {}
        self.steps: dict[str, dict[str, StepRecord]] = {}
        self.claims: dict[_LedgerKey, tuple[str, datetime]] = {}
        self.attempts: dict[str, list[AttemptRecord]] = {}
        self.ledger: dict[_LedgerKey, DispatchRecord] = {}
        self.idempotency: dict[tuple[str, str, str], str] = {}
        self.waiters: dict[tuple[str, str], SignalWaiter] = {}
        self.buffered: dict[tuple[str, str], BufferedSignal] = {}
        self.events: dict[str, list[EventRecord]] = {}
        self.loop_items: dict[tuple[str, str], tuple[JSON, ...]] = {}
        self.event_seq = 0
        self.schedules: dict[tuple[str, str], ScheduleState] = {}
        self.cron_fires: dict[tuple[str, str, datetime], str | None] = {}


class MemoryTx:
    """A transaction over the memory store (see :class:`floworch.storage.port.StoreTx`)."""

    def __init__(self, state: _State) -> None:
        self._s = state
        self._undo: list[Callable[[], None]] = []

    def _rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        missing = key not in table
        old = table.get(key)

        def undo() -> None:
            if missing:
                table.pop(key, None)
            else:
                table[key] = old

        self._undo.append(undo)
        table[key] = value

    def _append(self, items: list[Any], value: Any) -> None:
        items.append(value)

        def undo() -> None:
            items.pop()

        self._undo.append(undo)

    def _pop(self, table: dict[Any, Any], key: Any) -> None:
        if key in table:
            old = table.pop(key)
            self._undo.append(lambda: table.__setitem__(key, old))

    # -- runs ----------------------------------------------------------------------------------

    async def insert_run(self, run: RunRecord) -> None:
        if run.run_id in self._s.runs:
            raise ConflictError(f"run {run.run_id!r} already exists")
        self._set(self._s.runs, run.run_id, run)
        self._set(self._s.steps, run.run_id, {})

    async def get_run(self, run_id: str) -> RunRecord | None:
        return self._s.runs.get(run_id)

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
        run = self._s.runs.get(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        changes: dict[str, Any] = {"remaining": run.remaining + remaining_delta}
        if status is not None:
            changes["status"] = status
        if completed_at is not None:
            changes["completed_at"] = completed_at
        if clear_completed:
            changes["completed_at"] = None
        if cancel_reason is not None:
            changes["cancel_reason"] = cancel_reason
        if seq_floor is not None:
            changes["seq_floor"] = seq_floor
        new = dataclasses.replace(run, **changes)
        self._set(self._s.runs, run_id, new)
        return new

    # -- idempotency ---------------------------------------------------------------------------

    async def claim_idempotency_key(
        self, flow_id: str, trigger_key: str, key: str, run_id: str, now: datetime
    ) -> str | None:
        existing = self._s.idempotency.get((flow_id, trigger_key, key))
        if existing is not None:
            return existing
        self._set(self._s.idempotency, (flow_id, trigger_key, key), run_id)
        return None

    # -- steps ---------------------------------------------------------------------------------

    def _run_steps(self, run_id: str) -> dict[str, StepRecord]:
        steps = self._s.steps.get(run_id)
        if steps is None:
            raise RunNotFoundError(run_id)
        return steps

    async def insert_steps(self, steps: Sequence[StepRecord]) -> None:
        for step in steps:
            table = self._run_steps(step.run_id)
            if step.step_key in table:
                raise ConflictError(f"step {step.step_key!r} of run {step.run_id!r} already exists")
            self._set(table, step.step_key, step)

    async def get_steps(self, run_id: str, keys: Collection[str]) -> dict[str, StepRecord]:
        table = self._s.steps.get(run_id, {})
        return {key: table[key] for key in keys if key in table}

    async def get_steps_with_prefix(self, run_id: str, prefix: str) -> list[StepRecord]:
        table = self._s.steps.get(run_id, {})
        return [step for key, step in table.items() if key.startswith(prefix)]

    async def update_step(
        self,
        run_id: str,
        step_key: str,
        changes: StepChanges,
        *,
        expect_seq: int | None = None,
        expect_statuses: Collection[str] | None = None,
    ) -> StepRecord | None:
        table = self._s.steps.get(run_id, {})
        step = table.get(step_key)
        if step is None:
            return None
        if expect_seq is not None and step.seq != expect_seq:
            return None
        if expect_statuses is not None and step.status not in expect_statuses:
            return None
        new = apply_changes(step, changes)
        self._set(table, step_key, new)
        return new

    async def delete_steps(self, run_id: str, keys: Collection[str]) -> None:
        table = self._s.steps.get(run_id, {})
        for key in keys:
            self._pop(table, key)
            self._pop(self._s.waiters, (run_id, key))
            self._pop(self._s.loop_items, (run_id, key))

    async def put_loop_items(self, run_id: str, step_key: str, items: Sequence[JSON]) -> None:
        self._run_steps(run_id)
        self._set(self._s.loop_items, (run_id, step_key), tuple(items))

    async def insert_attempt(self, attempt: AttemptRecord) -> None:
        history = self._s.attempts.setdefault(attempt.run_id, [])
        self._append(history, attempt)

    # -- dispatch ledger -----------------------------------------------------------------------

    async def record_dispatches(self, dispatches: Sequence[DispatchRecord]) -> list[DispatchRecord]:
        fresh: list[DispatchRecord] = []
        for dispatch in dispatches:
            key = (dispatch.run_id, dispatch.step_key, dispatch.seq)
            if key not in self._s.ledger:
                self._set(self._s.ledger, key, dispatch)
                fresh.append(dispatch)
        return fresh

    # -- signals -------------------------------------------------------------------------------

    async def register_waiter(self, waiter: SignalWaiter) -> JSON | None:
        buffered = self._s.buffered.get((waiter.run_id, waiter.signal_name))
        if buffered is not None and buffered.consumed_at is None:
            self._set(
                self._s.buffered,
                (waiter.run_id, waiter.signal_name),
                dataclasses.replace(buffered, consumed_at=waiter.created_at),
            )
            delivered = dataclasses.replace(
                waiter, delivered_at=waiter.created_at, payload=buffered.payload
            )
            self._set(self._s.waiters, (waiter.run_id, waiter.step_key), delivered)
            return {"payload": buffered.payload}
        existing = self._s.waiters.get((waiter.run_id, waiter.step_key))
        if existing is not None:
            # Registering again keeps the original creation time (idempotent re-registration).
            waiter = dataclasses.replace(waiter, created_at=existing.created_at)
        self._set(self._s.waiters, (waiter.run_id, waiter.step_key), waiter)
        return None

    async def deliver_signal(
        self, run_id: str, signal_name: str, payload: JSON, now: datetime
    ) -> tuple[str, str | None]:
        delivered_key: str | None = None
        for (waiter_run, key), waiter in self._s.waiters.items():
            if waiter_run != run_id or waiter.signal_name != signal_name:
                continue
            if waiter.delivered_at is None:
                self._set(
                    self._s.waiters,
                    (run_id, key),
                    dataclasses.replace(waiter, delivered_at=now, payload=payload),
                )
                return SignalOutcome.DELIVERED, key
            delivered_key = key
        if delivered_key is not None or (run_id, signal_name) in self._s.buffered:
            return SignalOutcome.ALREADY_DELIVERED, delivered_key
        self._set(
            self._s.buffered,
            (run_id, signal_name),
            BufferedSignal(run_id, signal_name, payload, received_at=now),
        )
        return SignalOutcome.BUFFERED, None

    async def remove_waiter(self, run_id: str, step_key: str) -> None:
        self._pop(self._s.waiters, (run_id, step_key))

    # -- events --------------------------------------------------------------------------------

    async def append_events(self, events: Sequence[EventRecord]) -> None:
        for event in events:
            self._s.event_seq += 1
            log = self._s.events.setdefault(event.run_id, [])
            self._append(log, dataclasses.replace(event, event_id=self._s.event_seq))

    # -- schedules -----------------------------------------------------------------------------

    async def get_schedule_state(self, flow_id: str, trigger_key: str) -> ScheduleState | None:
        return self._s.schedules.get((flow_id, trigger_key))

    async def put_schedule_state(self, state: ScheduleState) -> None:
        self._set(self._s.schedules, (state.flow_id, state.trigger_key), state)

    async def record_cron_fire(
        self, flow_id: str, trigger_key: str, fire_time: datetime, run_id: str | None
    ) -> bool:
        key = (flow_id, trigger_key, fire_time)
        if key in self._s.cron_fires:
            return False
        self._set(self._s.cron_fires, key, run_id)
        return True


class MemoryStore(MemoryApiMixin, MemoryLeases):
    """The store port in memory. Not shared between processes; lost on exit.

    It also implements the control plane's methods (:class:`~floworch.storage.api_port.ApiStore`)
    and host leases (:class:`~floworch.storage.leases.HostLeases`).
    """

    def __init__(self) -> None:
        self._s = _State()
        self._webhooks = WebhookLog()
        self._host_leases = {}
        self._global_lock = asyncio.Lock()
        self._run_locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTx]:
        async with self._global_lock:
            tx = MemoryTx(self._s)
            try:
                yield tx
            except BaseException:
                tx._rollback()
                raise

    @asynccontextmanager
    async def run_transaction(
        self, run_id: str, *, steps: Collection[str] = ()
    ) -> AsyncIterator[MemoryTx]:
        if run_id not in self._s.runs:
            raise RunNotFoundError(run_id)
        lock = self._run_locks.setdefault(run_id, asyncio.Lock())
        async with lock:
            tx = MemoryTx(self._s)
            try:
                yield tx
            except BaseException:
                tx._rollback()
                raise

    async def close(self) -> None:
        return None

    # -- flows ---------------------------------------------------------------------------------

    async def upsert_flow(self, flow: FlowRecord, *, keep_enabled: bool = True) -> FlowRecord:
        existing = self._s.flows.get(flow.flow_id)
        if existing is not None and keep_enabled:
            flow = dataclasses.replace(flow, enabled=existing.enabled)
        self._s.flows[flow.flow_id] = flow
        return flow

    async def get_flow(self, flow_id: str) -> FlowRecord | None:
        return self._s.flows.get(flow_id)

    async def list_flows(self) -> list[FlowRecord]:
        return [self._s.flows[key] for key in sorted(self._s.flows)]

    async def set_flow_enabled(self, flow_id: str, enabled: bool, now: datetime) -> bool:
        flow = self._s.flows.get(flow_id)
        if flow is None:
            return False
        self._s.flows[flow_id] = dataclasses.replace(flow, enabled=enabled, updated_at=now)
        return True

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
        run = self._s.runs.get(run_id)
        if run is None:
            return ClaimResult(ClaimOutcome.RUN_NOT_FOUND)
        table = self._s.steps[run_id]
        step = table.get(step_key)
        if step is None or step.seq != seq:
            return ClaimResult(ClaimOutcome.STALE)
        claim_key = (run_id, step_key, seq)
        if step.status in _PARKED:
            outcome = ClaimOutcome.ACQUIRED
        elif step.status == StepStatus.RUNNING:
            claim = self._s.claims.get(claim_key)
            if claim is not None and claim[1] > now:
                return ClaimResult(ClaimOutcome.ALREADY_CLAIMED)
            outcome = ClaimOutcome.TAKEN_OVER
        else:
            return ClaimResult(ClaimOutcome.STALE)
        self._s.claims[claim_key] = (owner, lease_until)
        step = dataclasses.replace(
            step,
            status=StepStatus.RUNNING,
            started_at=now,
            lease_owner=owner,
            lease_expires_at=lease_until,
        )
        table[step_key] = step
        read = {key: table[key] for key in outputs if key in table}
        return ClaimResult(outcome, run=run, step=step, outputs=read)

    async def renew_lease(
        self, run_id: str, step_key: str, seq: int, owner: str, lease_until: datetime
    ) -> RunStatus | None:
        claim_key = (run_id, step_key, seq)
        claim = self._s.claims.get(claim_key)
        step = self._s.steps.get(run_id, {}).get(step_key)
        if claim is None or claim[0] != owner or step is None or step.seq != seq:
            return None
        if step.status != StepStatus.RUNNING or step.lease_owner != owner:
            return None
        self._s.claims[claim_key] = (owner, lease_until)
        self._s.steps[run_id][step_key] = dataclasses.replace(step, lease_expires_at=lease_until)
        return self._s.runs[run_id].status

    async def mark_dispatched(
        self, keys: Sequence[tuple[str, str, int]], sent_at: datetime
    ) -> None:
        for key in keys:
            row = self._s.ledger.get(key)
            if row is not None and row.sent_at is None:
                self._s.ledger[key] = dataclasses.replace(row, sent_at=sent_at)

    # -- reads ---------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord | None:
        return self._s.runs.get(run_id)

    def _matching(self, query: RunQuery) -> list[RunRecord]:
        runs = [
            run
            for run in self._s.runs.values()
            if (query.flow_id is None or run.flow_id == query.flow_id)
            and (not query.statuses or run.status in query.statuses)
            and (query.created_after is None or run.created_at >= query.created_after)
            and (query.created_before is None or run.created_at < query.created_before)
        ]
        runs.sort(key=lambda run: (run.created_at, run.run_id), reverse=True)
        return runs

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        return self._matching(query)[query.offset : query.offset + query.limit]

    async def count_runs(self, query: RunQuery) -> int:
        return len(self._matching(query))

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        return list(self._s.steps.get(run_id, {}).values())

    async def get_attempts(self, run_id: str, step_key: str | None = None) -> list[AttemptRecord]:
        return [
            attempt
            for attempt in self._s.attempts.get(run_id, [])
            if step_key is None or attempt.step_key == step_key
        ]

    async def get_outputs(self, run_id: str, keys: Collection[str]) -> dict[str, StepRecord]:
        table = self._s.steps.get(run_id, {})
        return {key: table[key] for key in keys if key in table}

    async def get_loop_item(self, run_id: str, step_key: str, index: int) -> LoopItem | None:
        items = self._s.loop_items.get((run_id, step_key), ())
        return LoopItem(items[index]) if 0 <= index < len(items) else None

    async def list_events(
        self, run_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[EventRecord]:
        events = [e for e in self._s.events.get(run_id, []) if (e.event_id or 0) > after_id]
        return events[:limit]

    async def list_waiters(self, run_id: str) -> list[SignalWaiter]:
        return [w for (run, _), w in self._s.waiters.items() if run == run_id]

    async def get_schedule_state(self, flow_id: str, trigger_key: str) -> ScheduleState | None:
        return self._s.schedules.get((flow_id, trigger_key))

    async def list_schedule_states(self) -> list[ScheduleState]:
        return [self._s.schedules[key] for key in sorted(self._s.schedules)]

    # -- reconciler scans ----------------------------------------------------------------------

    async def due_dispatches(
        self,
        now: datetime,
        *,
        unsent_grace_until: datetime,
        sent_stuck_before: datetime,
        limit: int,
    ) -> list[DispatchRecord]:
        due: list[DispatchRecord] = []
        settled: list[_LedgerKey] = []
        for key, row in self._s.ledger.items():
            step = self._s.steps.get(row.run_id, {}).get(row.step_key)
            if step is None or step.seq != row.seq or step.status not in _PARKED:
                if row.sent_at is not None:
                    settled.append(key)
                continue
            unsent_due = row.sent_at is None and row.due_at <= unsent_grace_until
            looks_lost = row.sent_at is not None and row.due_at <= sent_stuck_before
            if unsent_due or looks_lost:
                due.append(row)
            if len(due) >= limit:
                break
        # Rows whose step moved on can never be due again; dropping them keeps scans short.
        for key in settled:
            self._s.ledger.pop(key, None)
        return due

    async def expired_leases(self, now: datetime, *, limit: int) -> list[StepRecord]:
        found: list[StepRecord] = []
        for run in self._s.runs.values():
            if run.status != RunStatus.RUNNING:
                continue
            for step in self._s.steps[run.run_id].values():
                if (
                    step.status == StepStatus.RUNNING
                    and step.lease_expires_at is not None
                    and step.lease_expires_at <= now
                ):
                    found.append(step)
                    if len(found) >= limit:
                        return found
        return found

    async def runs_past_timeout(self, now: datetime, *, limit: int) -> list[RunRecord]:
        return [
            run
            for run in self._s.runs.values()
            if run.status == RunStatus.RUNNING
            and run.timeout_at is not None
            and run.timeout_at <= now
        ][:limit]

    async def unfinished_runs(self, *, limit: int, after_run_id: str = "") -> list[RunRecord]:
        runs = sorted(
            (
                r
                for r in self._s.runs.values()
                if r.status == RunStatus.RUNNING and r.run_id > after_run_id
            ),
            key=lambda run: run.run_id,
        )
        return runs[:limit]

    # -- retention -----------------------------------------------------------------------------

    async def prune_runs(self, completed_before: datetime, *, batch_size: int) -> int:
        doomed = [
            run.run_id
            for run in self._s.runs.values()
            if run.status != RunStatus.RUNNING
            and run.completed_at is not None
            and run.completed_at < completed_before
        ][:batch_size]
        for run_id in doomed:
            self._s.runs.pop(run_id, None)
            self._s.steps.pop(run_id, None)
            self._s.attempts.pop(run_id, None)
            self._s.events.pop(run_id, None)
            self._run_locks.pop(run_id, None)
            for table in (self._s.claims, self._s.ledger):
                for key in [k for k in table if k[0] == run_id]:
                    del table[key]
            for table2 in (self._s.waiters, self._s.buffered, self._s.loop_items):
                for key2 in [k for k in table2 if k[0] == run_id]:
                    del table2[key2]
        return len(doomed)
