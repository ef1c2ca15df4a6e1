"""Request and response models of the HTTP API (camelCase JSON, like the manifests)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

from floworch.model.statuses import RunStatus, StepStatus


class ApiModel(BaseModel):
    """Base of every API model: camelCase names on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# -- flows ---------------------------------------------------------------------------------------


class TriggerInfo(ApiModel):
    key: str
    type: str
    slug: str | None = None
    cron: str | None = None
    queue: str | None = None


class FlowSummary(ApiModel):
    flow_id: str
    version: str
    description: str | None = None
    enabled: bool
    manifest_enabled: bool = Field(description="The manifest's own enabled value (the default).")
    triggers: list[TriggerInfo]
    step_count: int
    last_run_status: RunStatus | None = None


class FlowList(ApiModel):
    flows: list[FlowSummary]


class FlowDetail(FlowSummary):
    manifest: dict[str, JsonValue]
    mermaid: str


class GraphNode(ApiModel):
    key: str = Field(description="The step template: fetch, or each.*.charge inside a ForEach.")
    step_key: str = Field(description="The key within its scope (charge).")
    type: str
    x: float
    y: float
    width: float
    height: float
    parent: str | None = Field(description="The ForEach group it sits in.")
    group: bool = Field(description="A ForEach step drawn around its body.")
    depth: int


class GraphEdge(ApiModel):
    source: str
    target: str
    points: list[tuple[float, float]]
    label: str | None = None


class FlowGraph(ApiModel):
    """The flow's DAG laid out left to right, in SVG user units."""

    flow_id: str
    width: float
    height: float
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class TriggerStarted(ApiModel):
    run_id: str
    duplicate: bool = Field(description="True when the Idempotency-Key was seen before.")


# -- schedules -----------------------------------------------------------------------------------


class ScheduleInfo(ApiModel):
    flow_id: str
    trigger_key: str
    cron: str = Field(description="The manifest's expression.")
    cron_override: str | None = None
    effective_cron: str
    timezone: str
    paused: bool
    next_fire_at: datetime | None = None
    upcoming: list[datetime] = Field(
        default_factory=list, description="The next few fire times (none while paused)."
    )
    last_fire_at: datetime | None = None
    flow_enabled: bool


class ScheduleList(ApiModel):
    schedules: list[ScheduleInfo]


class CronOverride(ApiModel):
    cron: str | None = Field(
        description="A 5- or 6-field cron expression, or null to go back to the manifest's.",
        max_length=100,
    )


# -- runs ----------------------------------------------------------------------------------------


class RunSummaryModel(ApiModel):
    run_id: str
    flow_id: str
    flow_version: str
    trigger_key: str
    status: RunStatus
    created_at: datetime
    completed_at: datetime | None = None
    idempotency_key: str | None = None
    source_run_id: str | None = None
    cancel_reason: str | None = None


class RunList(ApiModel):
    runs: list[RunSummaryModel]
    total: int = Field(description="How many runs match the filters.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class AttemptModel(ApiModel):
    attempt: int
    seq: int
    status: StepStatus
    started_at: datetime | None = None
    completed_at: datetime
    error: JsonValue = None


class StepDetail(ApiModel):
    step_key: str
    step_type: str
    status: StepStatus
    attempt: int
    attempts: list[AttemptModel]
    inputs: JsonValue = None
    output: JsonValue = None
    error: JsonValue = None
    when_trace: JsonValue = None
    skip_reason: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    due_at: datetime | None = None


class WaiterModel(ApiModel):
    step_key: str
    signal_name: str
    since: datetime
    expires_at: datetime | None = None
    delivered_at: datetime | None = None


class RunDetail(RunSummaryModel):
    trigger_body: JsonValue = None
    trigger_headers: dict[str, str]
    timeout_at: datetime | None = None
    steps: list[StepDetail]
    waiting_for: list[WaiterModel]
    reruns: list[str] = Field(description="Runs started from this run's trigger data.")


class EventModel(ApiModel):
    event_id: int
    run_id: str
    kind: str
    at: datetime
    step_key: str | None = None
    message: str
    data: JsonValue = None


class EventList(ApiModel):
    events: list[EventModel]
    next_after: int = Field(description="Pass as ?after= (or ?since=) to read on.")


class CancelRequest(ApiModel):
    reason: str = Field(default="cancelled through the API", max_length=1000)


class CancelResult(ApiModel):
    run_id: str
    cancelled: bool


class RetryStarted(ApiModel):
    run_id: str
    step_key: str


class RerunStarted(ApiModel):
    run_id: str
    source_run_id: str


class SignalResult(ApiModel):
    run_id: str
    signal_name: str
    outcome: Literal["Delivered", "Buffered", "AlreadyDelivered"]


class BulkCancelRequest(ApiModel):
    flow_id: str | None = Field(default=None, max_length=200)
    started_after: datetime | None = None
    started_before: datetime | None = None
    q: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=100, ge=1, le=1000)
    reason: str = Field(default="bulk cancel through the API", max_length=1000)


class BulkCancelResult(ApiModel):
    matched: int = Field(description="Running runs that matched the filter.")
    cancelled: list[str]
    remaining: int = Field(description="Matching runs left running (over the limit).")


# -- stats ---------------------------------------------------------------------------------------


class StatusCountModel(ApiModel):
    flow_id: str
    status: RunStatus
    count: int


class StepDurationModel(ApiModel):
    flow_id: str
    step_key: str
    count: int
    p50_ms: float
    p95_ms: float
    max_ms: float


class RunDurationModel(ApiModel):
    flow_id: str
    count: int
    p50_ms: float
    p95_ms: float
    max_ms: float


class HourlyCountModel(ApiModel):
    hour: datetime
    count: int


class StatsModel(ApiModel):
    since: datetime
    until: datetime
    by_status: list[StatusCountModel]
    step_durations: list[StepDurationModel]
    runs_per_hour: list[HourlyCountModel]
    run_durations: list[RunDurationModel] = Field(
        default_factory=list, description="Creation to completion of finished runs, per flow."
    )
    webhook_rejections: dict[str, int]
    dead_lettered: int | None = Field(
        default=None,
        description="Step messages dead-lettered (as the host counts them; null: unknown).",
    )
    sampled: bool


# -- webhooks ------------------------------------------------------------------------------------


class WebhookInfo(ApiModel):
    slug: str
    flow_id: str
    trigger_key: str
    url: str
    signature_header: str
    signature_format: str
    timestamp_header: str | None
    delivery_id_header: str | None
    replay_window_seconds: float
    max_body_bytes: int
    content_types: list[str]
    secret_configured: bool = Field(description="Whether the host found the secret (never shown).")


class WebhookList(ApiModel):
    webhooks: list[WebhookInfo]


class WebhookAccepted(ApiModel):
    run_id: str
    delivery_id: str


class DeliveryModel(ApiModel):
    flow_id: str
    trigger_key: str
    delivery_id: str
    received_at: datetime
    run_id: str | None = None


class DeliveryList(ApiModel):
    deliveries: list[DeliveryModel]


class RejectionModel(ApiModel):
    rejection_id: int | None = None
    slug: str
    reason: str
    detail: str
    at: datetime
    flow_id: str | None = None
    trigger_key: str | None = None
    delivery_id: str | None = None


class RejectionList(ApiModel):
    rejections: list[RejectionModel]


# -- health --------------------------------------------------------------------------------------


class Liveness(ApiModel):
    status: Literal["alive"]


class ReadinessModel(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    status: Literal["ready", "not ready"]
    reason: str | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as JSON-ready data with camelCase names."""
    return model.model_dump(mode="json", by_alias=True)
