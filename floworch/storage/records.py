"""The values the store keeps: frozen records passed across the store port.

Every datetime is timezone-aware UTC. JSON-like fields (trigger body, inputs, outputs, errors,
traces) hold plain JSON-serialisable Python values; the SQL adapter stores them as JSON text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from floworch.model.statuses import RunStatus, StepStatus

JSON = Any
"""A JSON-serialisable value (dict, list, str, int, float, bool or None)."""


@dataclass(frozen=True)
class FlowRecord:
    """A registered flow as stored: its manifest and whether it is enabled."""

    flow_id: str
    version: str
    manifest: JSON
    enabled: bool
    updated_at: datetime


@dataclass(frozen=True)
class RunRecord:
    """One run of a flow.

    ``remaining`` counts the root-scope steps that are not terminal yet; the run completes when it
    reaches zero. ``timeout_at`` is the run deadline (None = no run timeout). ``seq_floor`` is the
    highest dispatch number any deleted step row of the run had (a manual retry deletes and
    recreates rows): new step rows start after it, so a step's message ids never repeat.
    """

    run_id: str
    flow_id: str
    flow_version: str
    trigger_key: str
    status: RunStatus
    trigger_body: JSON
    trigger_headers: Mapping[str, str]
    created_at: datetime
    remaining: int
    idempotency_key: str | None = None
    source_run_id: str | None = None
    completed_at: datetime | None = None
    timeout_at: datetime | None = None
    cancel_reason: str | None = None
    trace_context: Mapping[str, str] = field(default_factory=dict)
    seq_floor: int = 0


@dataclass(frozen=True, slots=True)
class LoopItem:
    """One item of a ForEach (its own row, so the ForEach step's row holds only counters)."""

    value: JSON


@dataclass(frozen=True)
class StepRecord:
    """One step instance of a run (``each.3.charge`` for a ForEach body step).

    ``seq`` is the dispatch number: it grows by one every time the step is dispatched again
    (retry, poll, wake-up, takeover after a lost lease) and is part of the message id, so a stale
    or duplicate message never runs a newer dispatch. ``attempt`` counts handler attempts for the
    retry policy (1 = first try). ``state`` is engine-private JSON (ForEach progress, poll count,
    signal wait) that the store keeps verbatim.
    """

    run_id: str
    step_key: str
    step_type: str
    status: StepStatus
    seq: int = 1
    attempt: int = 1
    inputs: JSON = None
    output: JSON = None
    error: JSON = None
    when_trace: JSON = None
    skip_reason: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    due_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    state: JSON = None


@dataclass(frozen=True)
class StepChanges:
    """A partial update of a step row: only fields that are not ``UNSET`` are written."""

    status: StepStatus | None = None
    seq: int | None = None
    attempt: int | None = None
    inputs: JSON = None
    output: JSON = None
    error: JSON = None
    when_trace: JSON = None
    skip_reason: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    due_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    state: JSON = None
    set_fields: frozenset[str] = frozenset()
    """Names of the fields to write; use :func:`step_changes` to build this."""


def step_changes(**fields: Any) -> StepChanges:
    """Builds a :class:`StepChanges` that writes exactly the given fields (None included)."""
    return StepChanges(**fields, set_fields=frozenset(fields))


def apply_changes(step: StepRecord, changes: StepChanges) -> StepRecord:
    """Returns ``step`` with the fields named in ``changes.set_fields`` replaced."""
    values = {name: getattr(changes, name) for name in changes.set_fields}
    return replace(step, **values)


@dataclass(frozen=True)
class AttemptRecord:
    """The history of one handler attempt of a step."""

    run_id: str
    step_key: str
    attempt: int
    seq: int
    status: StepStatus
    started_at: datetime | None
    completed_at: datetime
    output: JSON = None
    error: JSON = None


@dataclass(frozen=True)
class DispatchRecord:
    """A dispatch-ledger row: the engine decided to send this step message.

    Written in the same transaction as the decision, so a crash between commit and send loses
    nothing: the reconciler re-sends rows with ``sent_at`` None once they are due.
    """

    run_id: str
    step_key: str
    seq: int
    flow_id: str
    due_at: datetime
    created_at: datetime
    sent_at: datetime | None = None


class ClaimOutcome(StrEnum):
    """Why :meth:`Store.claim_step` did or did not hand the step to the caller."""

    ACQUIRED = "acquired"
    TAKEN_OVER = "taken_over"
    ALREADY_CLAIMED = "already_claimed"
    STALE = "stale"
    RUN_NOT_FOUND = "run_not_found"


@dataclass(frozen=True)
class ClaimResult:
    """The answer of a claim: the outcome, plus the run and step when the caller may proceed."""

    outcome: str
    run: RunRecord | None = None
    step: StepRecord | None = None
    outputs: dict[str, StepRecord] = field(default_factory=dict)
    """The step rows the claim was asked to read (``claim_step(..., outputs=...)``) that exist,
    read after the claim; empty when it was not acquired."""

    @property
    def acquired(self) -> bool:
        """Whether the caller now owns the step (fresh claim or takeover of a lapsed lease)."""
        return self.outcome in (ClaimOutcome.ACQUIRED, ClaimOutcome.TAKEN_OVER)


class SignalOutcome(StrEnum):
    """The answer of a signal delivery."""

    DELIVERED = "Delivered"
    BUFFERED = "Buffered"
    NOT_FOUND = "NotFound"
    ALREADY_DELIVERED = "AlreadyDelivered"


@dataclass(frozen=True)
class SignalWaiter:
    """A WaitForSignal step parked on a named signal."""

    run_id: str
    step_key: str
    signal_name: str
    created_at: datetime
    expires_at: datetime | None = None
    delivered_at: datetime | None = None
    payload: JSON = None


@dataclass(frozen=True)
class BufferedSignal:
    """A signal that arrived before any step waited for it."""

    run_id: str
    signal_name: str
    payload: JSON
    received_at: datetime
    consumed_at: datetime | None = None


@dataclass(frozen=True)
class ScheduleState:
    """The persisted state of one cron trigger, shared by every replica."""

    flow_id: str
    trigger_key: str
    paused: bool = False
    cron_override: str | None = None
    last_fire_at: datetime | None = None
    next_fire_at: datetime | None = None
    pending_sequence_number: int | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class EventRecord:
    """One entry of a run's event log (what the dashboard's timeline shows)."""

    run_id: str
    kind: str
    at: datetime
    step_key: str | None = None
    message: str = ""
    data: JSON = None
    event_id: int | None = None


@dataclass(frozen=True)
class RunQuery:
    """Filters and paging for listing runs (newest first)."""

    flow_id: str | None = None
    statuses: frozenset[RunStatus] = frozenset()
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 50
    offset: int = 0
