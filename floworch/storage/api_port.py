"""The control plane's part of the store port: searches, stats and webhook bookkeeping.

The HTTP API and the ``flows``/``schedules`` commands need reads the engine never does (run
searches with keyset paging and a total, the event log across runs, stats) and two small tables
of their own (webhook deliveries and rejections). :class:`ApiStore` adds them to
:class:`~floworch.storage.port.Store`; the memory and SQL adapters implement both, and
``floworch.testing.api_store_contract`` is their shared contract suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from floworch.model.statuses import RunStatus
from floworch.storage.api_records import (
    RunPage,
    RunSearch,
    RunStats,
    StatsQuery,
    WebhookDelivery,
    WebhookRejection,
)
from floworch.storage.port import Store
from floworch.storage.records import EventRecord


@runtime_checkable
class ApiStore(Store, Protocol):
    """A store the HTTP API can serve from."""

    async def search_runs(self, search: RunSearch) -> RunPage:
        """One page of runs matching ``search``, newest first (created_at, then run id, both
        descending), with the total number of matches and the cursor of the next page (None on
        the last page). Never reads trigger bodies or headers."""

    async def last_run_statuses(self, flow_ids: Sequence[str]) -> dict[str, RunStatus]:
        """The status of each flow's newest run; flows with no run are absent."""

    async def events_since(
        self, after_id: int, *, limit: int, run_id: str | None = None
    ) -> list[EventRecord]:
        """Events with an id greater than ``after_id``, in id order, across every run (or one).

        A poller that remembers the last id it saw gets every later event. On PostgreSQL and SQL
        Server ids are drawn before commit, so an event may become visible after one with a
        higher id: a consumer that must see everything re-reads a short overlap."""

    async def latest_event_id(self) -> int:
        """The highest event id so far (0 when the log is empty): where a live view that does
        not want the history starts reading."""

    async def run_stats(self, query: StatsQuery) -> RunStats:
        """Runs by status per flow, step duration and run duration percentiles and runs per
        hour over a window."""

    async def record_webhook_delivery(self, delivery: WebhookDelivery) -> bool:
        """Insert-once per (flow, trigger, delivery id): True when this call recorded it."""

    async def list_webhook_deliveries(
        self, *, flow_id: str | None = None, limit: int = 50
    ) -> list[WebhookDelivery]:
        """Accepted deliveries, newest first."""

    async def record_webhook_rejection(self, rejection: WebhookRejection) -> None:
        """Appends to the rejection log."""

    async def list_webhook_rejections(
        self, *, flow_id: str | None = None, slug: str | None = None, limit: int = 50
    ) -> list[WebhookRejection]:
        """Refused deliveries, newest first (by id)."""

    async def count_webhook_rejections(self, *, since: datetime) -> dict[str, int]:
        """Rejections since a time, by reason."""

    async def prune_webhook_log(self, before: datetime) -> int:
        """Deletes deliveries and rejections older than ``before``; returns how many rows."""


__all__ = ["ApiStore"]
