"""The control plane's store methods on the SQL store (see :mod:`floworch.storage.api_port`).

:class:`SqlApiMixin` is a base of :class:`~floworch.storage.sql.store.SqlStore`; it runs the
statements of :mod:`floworch.storage.sql.queries` and :mod:`floworch.storage.sql.webhooks` on
the store's connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from floworch.model.statuses import RunStatus
from floworch.storage import stats
from floworch.storage.api_records import (
    RejectionReason,
    RunPage,
    RunSearch,
    RunStats,
    RunSummary,
    StatsQuery,
    WebhookDelivery,
    WebhookRejection,
)
from floworch.storage.records import EventRecord
from floworch.storage.sql import queries as q
from floworch.storage.sql import rows
from floworch.storage.sql import webhooks as wh
from floworch.storage.sql.api_schema import webhook_deliveries
from floworch.storage.sql.compiled import adhoc
from floworch.storage.sql.database import Result, SqlConnection
from floworch.storage.sql.errors import translating
from floworch.storage.sql.writes import insert_once


def _summary(row: Any) -> RunSummary:
    return RunSummary(
        run_id=row["run_id"],
        flow_id=row["flow_id"],
        flow_version=row["flow_version"],
        trigger_key=row["trigger_key"],
        status=RunStatus(row["status"]),
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        idempotency_key=row["idempotency_key"],
        source_run_id=row["source_run_id"],
        cancel_reason=row["cancel_reason"],
    )


class SqlApiMixin:
    """Searches, stats and the webhook log over the SQL store's connections."""

    def _connect(self, *, write: bool) -> AbstractAsyncContextManager[SqlConnection]:
        raise NotImplementedError  # provided by SqlStore

    def _write(self) -> AbstractAsyncContextManager[SqlConnection]:
        raise NotImplementedError  # provided by SqlStore: a connection in a write transaction

    @property
    def url(self) -> Any:
        raise NotImplementedError  # provided by SqlStore

    async def _run(self, conn: SqlConnection, stmt: Any) -> Result:
        with translating(self.url):
            return await conn.execute(adhoc(stmt))

    async def _rows(self, stmt: Any) -> list[Any]:
        async with self._connect(write=False) as conn:
            found = await self._run(conn, stmt)
        return rows.mappings(found.columns, found.rows)

    async def search_runs(self, search: RunSearch) -> RunPage:
        async with self._connect(write=False) as conn:
            result = await self._run(conn, q.search_runs(search))
            found = rows.mappings(result.columns, result.rows)
            total = int((await self._run(conn, q.count_runs(search))).scalar() or 0)
        page = [_summary(r) for r in found[: search.limit]]
        more = len(found) > search.limit
        return RunPage(page, total, page[-1].cursor if more and page else None)

    async def last_run_statuses(self, flow_ids: Sequence[str]) -> dict[str, RunStatus]:
        found: dict[str, RunStatus] = {}
        async with self._connect(write=False) as conn:
            for flow_id in sorted(set(flow_ids)):
                status = (await self._run(conn, q.newest_run_status(flow_id))).scalar()
                if status is not None:
                    found[flow_id] = RunStatus(status)
        return found

    async def events_since(
        self, after_id: int, *, limit: int, run_id: str | None = None
    ) -> list[EventRecord]:
        return [rows.to_event(r) for r in await self._rows(q.events_since(after_id, limit, run_id))]

    async def latest_event_id(self) -> int:
        async with self._connect(write=False) as conn:
            found = (await self._run(conn, q.latest_event_id())).scalar()
        return int(found or 0)

    async def run_stats(self, query: StatsQuery) -> RunStats:
        async with self._connect(write=False) as conn:
            counts = list((await self._run(conn, q.status_counts(query))).rows)
            created = list((await self._run(conn, q.run_created_times(query))).rows)
            attempts = (await self._run(conn, q.attempt_durations(query))).rows
        limit = query.sample_limit
        durations = [(f, k, done - started) for f, k, started, done in attempts[:limit]]
        return RunStats(
            by_status=stats.status_counts((f, s, n) for f, s, n in counts),
            step_durations=stats.step_durations(durations),
            runs_per_hour=stats.hourly(c for c, _, _ in created[:limit]),
            run_durations=stats.run_durations((f, c, done) for c, f, done in created[:limit]),
            sampled=len(created) > limit or len(attempts) > limit,
        )

    async def record_webhook_delivery(self, delivery: WebhookDelivery) -> bool:
        values = {
            "flow_id": delivery.flow_id,
            "trigger_key": delivery.trigger_key,
            "delivery_id": delivery.delivery_id,
            "received_at": delivery.received_at,
            "run_id": delivery.run_id,
        }
        async with self._write() as conn:
            with translating(self.url):
                return bool(await insert_once(conn, webhook_deliveries, [values]))

    async def list_webhook_deliveries(
        self, *, flow_id: str | None = None, limit: int = 50
    ) -> list[WebhookDelivery]:
        return [
            WebhookDelivery(
                flow_id=r["flow_id"],
                trigger_key=r["trigger_key"],
                delivery_id=r["delivery_id"],
                received_at=r["received_at"],
                run_id=r["run_id"],
            )
            for r in await self._rows(wh.select_deliveries(flow_id, limit))
        ]

    async def record_webhook_rejection(self, rejection: WebhookRejection) -> None:
        async with self._write() as conn:
            await self._run(conn, wh.insert_rejection(rejection))

    async def list_webhook_rejections(
        self, *, flow_id: str | None = None, slug: str | None = None, limit: int = 50
    ) -> list[WebhookRejection]:
        return [
            WebhookRejection(
                slug=r["slug"],
                reason=RejectionReason(r["reason"]),
                detail=r["detail"],
                at=r["at"],
                flow_id=r["flow_id"],
                trigger_key=r["trigger_key"],
                delivery_id=r["delivery_id"],
                rejection_id=int(r["rejection_id"]),
            )
            for r in await self._rows(wh.select_rejections(flow_id, slug, limit))
        ]

    async def count_webhook_rejections(self, *, since: datetime) -> dict[str, int]:
        async with self._connect(write=False) as conn:
            result = await self._run(conn, wh.count_rejections(since))
        return {str(reason): int(count) for reason, count in result.rows}

    async def prune_webhook_log(self, before: datetime) -> int:
        async with self._write() as conn:
            deliveries = await self._run(conn, wh.delete_old_deliveries(before))
            rejections = await self._run(conn, wh.delete_old_rejections(before))
        return max(deliveries.rowcount, 0) + max(rejections.rowcount, 0)


__all__ = ["SqlApiMixin"]
