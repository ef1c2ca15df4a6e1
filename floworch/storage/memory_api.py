"""The control plane's store methods on the memory store (see :mod:`floworch.storage.api_port`).

:class:`MemoryApiMixin` is a base of :class:`~floworch.storage.memory.MemoryStore`; it reads the
store's state and keeps the webhook log in a :class:`WebhookLog` of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from floworch.model.statuses import RunStatus
from floworch.storage import stats
from floworch.storage.api_records import (
    RunPage,
    RunSearch,
    RunStats,
    RunSummary,
    StatsQuery,
    WebhookDelivery,
    WebhookRejection,
)
from floworch.storage.records import EventRecord, RunRecord

if TYPE_CHECKING:
    from floworch.storage.memory import _State


class WebhookLog:
    """Accepted deliveries (by key) and the rejection log, in memory."""

    def __init__(self) -> None:
        self.deliveries: dict[tuple[str, str, str], WebhookDelivery] = {}
        self.rejections: list[WebhookRejection] = []
        self.next_rejection_id = 0


def summary_of(run: RunRecord) -> RunSummary:
    """The list view of a run."""
    return RunSummary(
        run_id=run.run_id,
        flow_id=run.flow_id,
        flow_version=run.flow_version,
        trigger_key=run.trigger_key,
        status=RunStatus(run.status),
        created_at=run.created_at,
        completed_at=run.completed_at,
        idempotency_key=run.idempotency_key,
        source_run_id=run.source_run_id,
        cancel_reason=run.cancel_reason,
    )


def _matches(run: RunRecord, search: RunSearch) -> bool:
    text = search.text
    return (
        (search.flow_id is None or run.flow_id == search.flow_id)
        and (not search.statuses or run.status in search.statuses)
        and (search.created_after is None or run.created_at >= search.created_after)
        and (search.created_before is None or run.created_at < search.created_before)
        and (search.source_run_id is None or run.source_run_id == search.source_run_id)
        and (
            not text
            or run.run_id.startswith(text)
            or (run.idempotency_key is not None and run.idempotency_key.startswith(text))
        )
    )


class MemoryApiMixin:
    """Searches, stats and the webhook log over the memory store's state."""

    _s: _State
    _webhooks: WebhookLog

    def _webhook_log(self) -> WebhookLog:
        return self._webhooks

    async def search_runs(self, search: RunSearch) -> RunPage:
        matching = sorted(
            (run for run in self._s.runs.values() if _matches(run, search)),
            key=lambda run: (run.created_at, run.run_id),
            reverse=True,
        )
        after = search.after
        page_from = (
            [r for r in matching if (r.created_at, r.run_id) < (after.created_at, after.run_id)]
            if after is not None
            else matching
        )
        page = [summary_of(run) for run in page_from[: search.limit + 1]]
        more = len(page) > search.limit
        page = page[: search.limit]
        return RunPage(page, len(matching), page[-1].cursor if more and page else None)

    async def last_run_statuses(self, flow_ids: Sequence[str]) -> dict[str, RunStatus]:
        newest: dict[str, RunRecord] = {}
        wanted = set(flow_ids)
        for run in self._s.runs.values():
            if run.flow_id not in wanted:
                continue
            seen = newest.get(run.flow_id)
            if seen is None or (run.created_at, run.run_id) > (seen.created_at, seen.run_id):
                newest[run.flow_id] = run
        return {flow_id: RunStatus(run.status) for flow_id, run in newest.items()}

    async def events_since(
        self, after_id: int, *, limit: int, run_id: str | None = None
    ) -> list[EventRecord]:
        logs = [self._s.events.get(run_id, [])] if run_id else self._s.events.values()
        found = [e for log in logs for e in log if (e.event_id or 0) > after_id]
        found.sort(key=lambda e: e.event_id or 0)
        return found[:limit]

    async def latest_event_id(self) -> int:
        return max((e.event_id or 0 for log in self._s.events.values() for e in log), default=0)

    async def run_stats(self, query: StatsQuery) -> RunStats:
        runs = [
            run
            for run in self._s.runs.values()
            if query.since <= run.created_at < query.until
            and (query.flow_id is None or run.flow_id == query.flow_id)
        ]
        counts: dict[tuple[str, str], int] = {}
        for run in runs:
            key = (run.flow_id, str(run.status))
            counts[key] = counts.get(key, 0) + 1
        flow_of = {run.run_id: run.flow_id for run in self._s.runs.values()}
        attempts = sorted(
            (
                a
                for run_id, history in self._s.attempts.items()
                if query.flow_id is None or flow_of.get(run_id) == query.flow_id
                for a in history
                if a.started_at is not None and query.since <= a.completed_at < query.until
            ),
            key=lambda a: a.completed_at,
            reverse=True,
        )
        created = sorted(runs, key=lambda run: run.created_at, reverse=True)
        sampled = len(attempts) > query.sample_limit or len(created) > query.sample_limit
        rows = [
            (flow_of.get(a.run_id, "?"), a.step_key, a.completed_at - a.started_at)
            for a in attempts[: query.sample_limit]
            if a.started_at is not None
        ]
        return RunStats(
            by_status=stats.status_counts((f, s, n) for (f, s), n in counts.items()),
            step_durations=stats.step_durations(rows),
            runs_per_hour=stats.hourly(run.created_at for run in created[: query.sample_limit]),
            run_durations=stats.run_durations(
                (run.flow_id, run.created_at, run.completed_at)
                for run in created[: query.sample_limit]
            ),
            sampled=sampled,
        )

    async def record_webhook_delivery(self, delivery: WebhookDelivery) -> bool:
        log = self._webhook_log()
        key = (delivery.flow_id, delivery.trigger_key, delivery.delivery_id)
        if key in log.deliveries:
            return False
        log.deliveries[key] = delivery
        return True

    async def list_webhook_deliveries(
        self, *, flow_id: str | None = None, limit: int = 50
    ) -> list[WebhookDelivery]:
        found = [
            d
            for d in self._webhook_log().deliveries.values()
            if flow_id is None or d.flow_id == flow_id
        ]
        found.sort(key=lambda d: (d.received_at, d.delivery_id), reverse=True)
        return found[:limit]

    async def record_webhook_rejection(self, rejection: WebhookRejection) -> None:
        log = self._webhook_log()
        log.next_rejection_id += 1
        log.rejections.append(dataclasses.replace(rejection, rejection_id=log.next_rejection_id))

    async def list_webhook_rejections(
        self, *, flow_id: str | None = None, slug: str | None = None, limit: int = 50
    ) -> list[WebhookRejection]:
        found = [
            r
            for r in reversed(self._webhook_log().rejections)
            if (flow_id is None or r.flow_id == flow_id) and (slug is None or r.slug == slug)
        ]
        return found[:limit]

    async def count_webhook_rejections(self, *, since: datetime) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._webhook_log().rejections:
            if r.at >= since:
                counts[str(r.reason)] = counts.get(str(r.reason), 0) + 1
        return counts

    async def prune_webhook_log(self, before: datetime) -> int:
        log = self._webhook_log()
        old = [k for k, d in log.deliveries.items() if d.received_at < before]
        for key in old:
            del log.deliveries[key]
        kept = [r for r in log.rejections if r.at >= before]
        pruned = len(old) + len(log.rejections) - len(kept)
        log.rejections = kept
        return pruned
