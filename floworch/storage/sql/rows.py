"""Conversions between records and table rows (plain dicts of column values)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import RowMapping

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
    }


def to_run(row: RowMapping) -> RunRecord:
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


def to_step(row: RowMapping) -> StepRecord:
    """A step row as a record."""
    values = {name: row[name] for name in STEP_FIELDS}
    values["status"] = StepStatus(values["status"])
    return StepRecord(run_id=row["run_id"], step_key=row["step_key"], **values)


def attempt_values(attempt: AttemptRecord) -> dict[str, Any]:
    """The column values of an attempt row."""
    return {
        "run_id": attempt.run_id,
        "step_key": attempt.step_key,
        "attempt": attempt.attempt,
        "seq": attempt.seq,
        "status": str(attempt.status),
        "started_at": attempt.started_at,
        "completed_at": attempt.completed_at,
        "output": attempt.output,
        "error": attempt.error,
    }


def to_attempt(row: RowMapping) -> AttemptRecord:
    """An attempt row as a record."""
    return AttemptRecord(
        run_id=row["run_id"],
        step_key=row["step_key"],
        attempt=row["attempt"],
        seq=row["seq"],
        status=StepStatus(row["status"]),
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        output=row["output"],
        error=row["error"],
    )


def dispatch_values(dispatch: DispatchRecord) -> dict[str, Any]:
    """The column values of a ledger row."""
    return {
        "run_id": dispatch.run_id,
        "step_key": dispatch.step_key,
        "seq": dispatch.seq,
        "flow_id": dispatch.flow_id,
        "due_at": dispatch.due_at,
        "created_at": dispatch.created_at,
        "sent_at": dispatch.sent_at,
    }


def to_dispatch(row: RowMapping) -> DispatchRecord:
    """A ledger row as a record."""
    return DispatchRecord(
        run_id=row["run_id"],
        step_key=row["step_key"],
        seq=row["seq"],
        flow_id=row["flow_id"],
        due_at=row["due_at"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


def waiter_values(waiter: SignalWaiter) -> dict[str, Any]:
    """The column values of a signal-waiter row."""
    return {
        "run_id": waiter.run_id,
        "step_key": waiter.step_key,
        "signal_name": waiter.signal_name,
        "created_at": waiter.created_at,
        "expires_at": waiter.expires_at,
        "delivered_at": waiter.delivered_at,
        "payload": waiter.payload,
    }


def to_waiter(row: RowMapping) -> SignalWaiter:
    """A signal-waiter row as a record."""
    return SignalWaiter(
        run_id=row["run_id"],
        step_key=row["step_key"],
        signal_name=row["signal_name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        delivered_at=row["delivered_at"],
        payload=row["payload"],
    )


def event_values(event: EventRecord) -> dict[str, Any]:
    """The column values of an event row (the database numbers it)."""
    return {
        "run_id": event.run_id,
        "kind": event.kind,
        "at": event.at,
        "step_key": event.step_key,
        "message": event.message,
        "data": event.data,
    }


def to_event(row: RowMapping) -> EventRecord:
    """An event row as a record."""
    return EventRecord(
        run_id=row["run_id"],
        kind=row["kind"],
        at=row["at"],
        step_key=row["step_key"],
        message=row["message"],
        data=row["data"],
        event_id=int(row["event_id"]),
    )


def schedule_values(state: ScheduleState) -> dict[str, Any]:
    """The column values of a schedule-state row."""
    return {
        "flow_id": state.flow_id,
        "trigger_key": state.trigger_key,
        "paused": state.paused,
        "cron_override": state.cron_override,
        "last_fire_at": state.last_fire_at,
        "next_fire_at": state.next_fire_at,
        "pending_sequence_number": state.pending_sequence_number,
        "updated_at": state.updated_at,
    }


def to_schedule(row: RowMapping) -> ScheduleState:
    """A schedule-state row as a record."""
    return ScheduleState(
        flow_id=row["flow_id"],
        trigger_key=row["trigger_key"],
        paused=bool(row["paused"]),
        cron_override=row["cron_override"],
        last_fire_at=row["last_fire_at"],
        next_fire_at=row["next_fire_at"],
        pending_sequence_number=row["pending_sequence_number"],
        updated_at=row["updated_at"],
    )


def flow_values(flow: FlowRecord) -> dict[str, Any]:
    """The column values of a flow row."""
    return {
        "flow_id": flow.flow_id,
        "version": flow.version,
        "manifest": flow.manifest,
        "enabled": flow.enabled,
        "updated_at": flow.updated_at,
    }


def to_flow(row: RowMapping) -> FlowRecord:
    """A flow row as a record."""
    return FlowRecord(
        flow_id=row["flow_id"],
        version=row["version"],
        manifest=row["manifest"],
        enabled=bool(row["enabled"]),
        updated_at=row["updated_at"],
    )
