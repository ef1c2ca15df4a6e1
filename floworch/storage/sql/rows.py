"""Conversions between records and table rows (plain dicts of column values)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.records import (
    AttemptRecord,
    DispatchRecord,
    EventRecord,
    FlowRecord,
    RunRecord,
    ScheduleState,
    SignalWaiter,
    StepChanges,
    StepRecord,
)

R = TypeVar("R")

STEP_FIELDS = (
    "step_type",
    "status",
    "seq",
    "attempt",
    "inputs",
    "output",
    "error",
    "when_trace",
    "skip_reason",
    "created_at",
    "started_at",
    "completed_at",
    "due_at",
    "lease_owner",
    "lease_expires_at",
    "state",
)
"""Step columns besides the key, named as on :class:`StepRecord` and :class:`StepChanges`."""


def mapping(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """A result row as a dict by column name."""
    return dict(zip(columns, row, strict=True))


def mappings(columns: Sequence[str], found: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Result rows as dicts by column name."""
    return [dict(zip(columns, row, strict=True)) for row in found]


def run_values(run: RunRecord) -> dict[str, Any]:
    """The column values of a new run row."""
    return {
        "run_id": run.run_id,
        "flow_id": run.flow_id,
        "flow_version": run.flow_version,
        "trigger_key": run.trigger_key,
        "status": str(run.status),
        "trigger_body": run.trigger_body,
        "trigger_headers": dict(run.trigger_headers),
        "created_at": run.created_at,
        "remaining": run.remaining,
        "idempotency_key": run.idempotency_key,
        "source_run_id": run.source_run_id,
        "completed_at": run.completed_at,
        "timeout_at": run.timeout_at,
        "cancel_reason": run.cancel_reason,
        "trace_context": dict(run.trace_context),
        "lock_version": 0,
        "seq_floor": run.seq_floor,
    }


def to_run(row: Mapping[str, Any]) -> RunRecord:
    """A run row as a record."""
    return RunRecord(
        run_id=row["run_id"],
        flow_id=row["flow_id"],
        flow_version=row["flow_version"],
        trigger_key=row["trigger_key"],
        status=RunStatus(row["status"]),
        trigger_body=row["trigger_body"],
        trigger_headers=row["trigger_headers"] or {},
        created_at=row["created_at"],
        remaining=row["remaining"],
        idempotency_key=row["idempotency_key"],
        source_run_id=row["source_run_id"],
        completed_at=row["completed_at"],
        timeout_at=row["timeout_at"],
        cancel_reason=row["cancel_reason"],
        trace_context=row["trace_context"] or {},
        seq_floor=row["seq_floor"],
    )


def step_values(step: StepRecord) -> dict[str, Any]:
    """The column values of a new step row."""
    values: dict[str, Any] = {"run_id": step.run_id, "step_key": step.step_key}
    for name in STEP_FIELDS:
        values[name] = getattr(step, name)
    values["status"] = str(step.status)
    return values


def step_change_values(changes: StepChanges) -> dict[str, Any]:
    """The columns a :class:`StepChanges` writes (exactly those in ``set_fields``)."""
    unknown = changes.set_fields - set(STEP_FIELDS)
    if unknown:
        raise ValueError(f"unknown step fields in StepChanges: {sorted(unknown)}")
    values = {name: getattr(changes, name) for name in changes.set_fields}
    if values.get("status") is not None:
        values["status"] = str(values["status"])
    return values


def to_step(row: Mapping[str, Any]) -> StepRecord:
    """A step row as a record."""
    values = {name: row[name] for name in STEP_FIELDS}
    values["status"] = StepStatus(values["status"])
    return StepRecord(run_id=row["run_id"], step_key=row["step_key"], **values)


def steps_in(columns: Sequence[str], found: Sequence[Sequence[Any]]) -> dict[str, StepRecord]:
    """Step rows of a result, by step key."""
    return {row["step_key"]: to_step(row) for row in mappings(columns, found)}


def record_values(record: Any, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The column values of a record whose columns are named as its fields."""
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name not in exclude}


def to_record(cls: type[R], row: Mapping[str, Any], **coerced: Any) -> R:
    """A row as a record of ``cls``; ``coerced`` replaces columns that need a conversion."""
    values = {f.name: row[f.name] for f in fields(cls) if f.name not in coerced}  # type: ignore[arg-type]
    return cls(**values, **coerced)


def attempt_values(attempt: AttemptRecord) -> dict[str, Any]:
    """The column values of an attempt row."""
    return {**record_values(attempt), "status": str(attempt.status)}


def to_attempt(row: Mapping[str, Any]) -> AttemptRecord:
    """An attempt row as a record."""
    return to_record(AttemptRecord, row, status=StepStatus(row["status"]))


def dispatch_values(dispatch: DispatchRecord) -> dict[str, Any]:
    """The column values of a ledger row."""
    return record_values(dispatch)


def to_dispatch(row: Mapping[str, Any]) -> DispatchRecord:
    """A ledger row as a record."""
    return to_record(DispatchRecord, row)


def waiter_values(waiter: SignalWaiter) -> dict[str, Any]:
    """The column values of a signal-waiter row."""
    return record_values(waiter)


def to_waiter(row: Mapping[str, Any]) -> SignalWaiter:
    """A signal-waiter row as a record."""
    return to_record(SignalWaiter, row)


def event_values(event: EventRecord) -> dict[str, Any]:
    """The column values of an event row (the database numbers it)."""
    return record_values(event, exclude=frozenset({"event_id"}))


def to_event(row: Mapping[str, Any]) -> EventRecord:
    """An event row as a record."""
    return to_record(EventRecord, row, event_id=int(row["event_id"]))


def schedule_values(state: ScheduleState) -> dict[str, Any]:
    """The column values of a schedule-state row."""
    return record_values(state)


def to_schedule(row: Mapping[str, Any]) -> ScheduleState:
    """A schedule-state row as a record."""
    return to_record(ScheduleState, row, paused=bool(row["paused"]))


def flow_values(flow: FlowRecord) -> dict[str, Any]:
    """The column values of a flow row."""
    return record_values(flow)


def to_flow(row: Mapping[str, Any]) -> FlowRecord:
    """A flow row as a record."""
    return to_record(FlowRecord, row, enabled=bool(row["enabled"]))
