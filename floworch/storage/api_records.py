"""Values the control plane (HTTP API, dashboard, ``flows``/``schedules`` commands) reads and
writes through the store: run searches with keyset paging, stats, webhook deliveries and
rejections.

Every datetime is timezone-aware UTC. A run summary never carries the trigger body or headers:
list views must not load them (a body may be up to the trigger body limit, and a page lists many).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from floworch.model.statuses import RunStatus

MAX_PAGE = 500
"""The largest page a run search returns."""


@dataclass(frozen=True)
class RunCursor:
    """Where a page of runs ended: the last run's creation time and id (newest first)."""

    created_at: datetime
    run_id: str


@dataclass(frozen=True)
class RunSearch:
    """Filters and keyset paging for listing runs, newest first.

    Attributes:
        flow_id: only runs of this flow.
        statuses: only runs in one of these statuses (empty: any).
        created_after: only runs created at or after this time.
        created_before: only runs created before this time.
        text: only runs whose id or idempotency key starts with this text (case-sensitive).
        source_run_id: only reruns of this run (lineage).
        after: the cursor of the previous page (None: the first page).
        limit: page size, 1 to :data:`MAX_PAGE`.
    """

    flow_id: str | None = None
    statuses: frozenset[RunStatus] = frozenset()
    created_after: datetime | None = None
    created_before: datetime | None = None
    text: str | None = None
    source_run_id: str | None = None
    after: RunCursor | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {self.limit}")


@dataclass(frozen=True)
class RunSummary:
    """One run as a list shows it (no trigger body, no headers)."""

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

    @property
    def cursor(self) -> RunCursor:
        """The cursor that continues a listing after this run."""
        return RunCursor(self.created_at, self.run_id)


@dataclass(frozen=True)
class RunPage:
    """A page of runs, the number of runs matching the filters, and the next page's cursor."""

    runs: list[RunSummary]
    total: int
    next_cursor: RunCursor | None


@dataclass(frozen=True)
class StatsQuery:
    """The window of a stats query: everything created or completed in ``[since, until)``.

    ``flow_id`` narrows every figure to one flow. ``sample_limit`` bounds how many step attempts
    and runs are read to compute percentiles and hourly counts (the newest are kept).
    """

    since: datetime
    until: datetime
    flow_id: str | None = None
    sample_limit: int = 50_000


@dataclass(frozen=True)
class StatusCount:
    """How many runs of a flow are in a status (runs created in the window)."""

    flow_id: str
    status: RunStatus
    count: int


@dataclass(frozen=True)
class StepDuration:
    """Handler attempt durations of one step of one flow, over the window."""

    flow_id: str
    step_key: str
    count: int
    p50: timedelta
    p95: timedelta
    max: timedelta


@dataclass(frozen=True)
class RunDuration:
    """Durations (creation to completion) of one flow's runs that finished, over the window."""

    flow_id: str
    count: int
    p50: timedelta
    p95: timedelta
    max: timedelta


@dataclass(frozen=True)
class HourlyCount:
    """Runs created in one UTC hour."""

    hour: datetime
    count: int


@dataclass(frozen=True)
class RunStats:
    """The dashboard's figures over one window."""

    by_status: list[StatusCount] = field(default_factory=list)
    step_durations: list[StepDuration] = field(default_factory=list)
    runs_per_hour: list[HourlyCount] = field(default_factory=list)
    run_durations: list[RunDuration] = field(default_factory=list)
    sampled: bool = False
    """True when more rows matched than ``sample_limit``: percentiles cover the newest only."""


class RejectionReason(enum.StrEnum):
    """Why a webhook delivery was refused."""

    UNKNOWN_SLUG = "UnknownSlug"
    NO_SECRET = "NoSecret"
    MISSING_SIGNATURE = "MissingSignature"
    BAD_SIGNATURE = "BadSignature"
    MISSING_TIMESTAMP = "MissingTimestamp"
    STALE_TIMESTAMP = "StaleTimestamp"
    REPLAYED = "Replayed"
    BODY_TOO_LARGE = "BodyTooLarge"
    UNSUPPORTED_MEDIA_TYPE = "UnsupportedMediaType"
    BAD_BODY = "BadBody"
    RATE_LIMITED = "RateLimited"
    FLOW_DISABLED = "FlowDisabled"


@dataclass(frozen=True)
class WebhookDelivery:
    """An accepted webhook delivery: its id (from the sender, or derived from the signature)
    and the run it started."""

    flow_id: str
    trigger_key: str
    delivery_id: str
    received_at: datetime
    run_id: str | None


@dataclass(frozen=True)
class WebhookRejection:
    """A refused webhook delivery. Never holds the body, a signature or a secret."""

    slug: str
    reason: RejectionReason
    detail: str
    at: datetime
    flow_id: str | None = None
    trigger_key: str | None = None
    delivery_id: str | None = None
    rejection_id: int | None = None


__all__ = [
    "MAX_PAGE",
    "HourlyCount",
    "RejectionReason",
    "RunCursor",
    "RunPage",
    "RunSearch",
    "RunStats",
    "RunSummary",
    "StatsQuery",
    "StatusCount",
    "StepDuration",
    "WebhookDelivery",
    "WebhookRejection",
]
