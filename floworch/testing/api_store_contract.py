"""The shared contract suite of the control plane's store methods (:class:`ApiStore`).

Subclass :class:`ApiStoreContract` with an async ``store`` fixture yielding a fresh, empty store
(the memory and SQL adapters do, in ``tests/unit/storage`` and ``tests/integration/storage``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.api_records import (
    RejectionReason,
    RunSearch,
    StatsQuery,
    WebhookDelivery,
    WebhookRejection,
)
from floworch.storage.records import AttemptRecord, EventRecord, RunRecord

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _run(run_id: str, created_at: datetime, **overrides: Any) -> RunRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "flow_id": "flow-a",
        "flow_version": "1",
        "trigger_key": "manual",
        "status": RunStatus.RUNNING,
        "trigger_body": {"big": "x" * 100},
        "trigger_headers": {"X-Id": "abc"},
        "created_at": created_at,
        "remaining": 1,
    }
    values.update(overrides)
    return RunRecord(**values)


async def _insert(store: Any, *runs: RunRecord) -> None:
    async with store.transaction() as tx:
        for run in runs:
            await tx.insert_run(run)


class ApiStoreContract:
    """Behaviour every :class:`~floworch.storage.api_port.ApiStore` shares."""

    async def test_search_pages_newest_first_with_a_total_and_no_gaps(self, store: Any) -> None:
        # Two runs share a creation time: the run id breaks the tie, so paging never skips one.
        runs = [_run(f"r{i:02d}", T0 + timedelta(seconds=i // 2)) for i in range(7)]
        await _insert(store, *runs)
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await store.search_runs(RunSearch(limit=3, after=cursor))
            assert page.total == 7
            seen.extend(r.run_id for r in page.runs)
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = [r.run_id for r in sorted(runs, key=lambda r: (r.created_at, r.run_id))]
        assert seen == list(reversed(expected))
        assert pages == 3

    async def test_an_exact_last_page_has_no_next_cursor(self, store: Any) -> None:
        await _insert(store, *(_run(f"r{i}", T0 + timedelta(seconds=i)) for i in range(4)))
        first = await store.search_runs(RunSearch(limit=2))
        second = await store.search_runs(RunSearch(limit=2, after=first.next_cursor))
        assert [r.run_id for r in second.runs] == ["r1", "r0"]
        assert second.next_cursor is None
        empty = await store.search_runs(RunSearch(flow_id="none"))
        assert (empty.runs, empty.total, empty.next_cursor) == ([], 0, None)

    async def test_search_filters_combine(self, store: Any) -> None:
        await _insert(
            store,
            _run("a1", T0, status=RunStatus.SUCCEEDED, idempotency_key="order-17"),
            _run("a2", T0 + timedelta(minutes=1), status=RunStatus.FAILED),
            _run("b1", T0 + timedelta(minutes=2), flow_id="flow-b"),
            _run("a3", T0 + timedelta(minutes=3), source_run_id="a2"),
        )

        async def ids(**filters: Any) -> list[str]:
            page = await store.search_runs(RunSearch(**filters))
            assert page.total == len(page.runs)
            return [r.run_id for r in page.runs]

        assert await ids(flow_id="flow-a") == ["a3", "a2", "a1"]
        assert await ids(statuses=frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED})) == [
            "a2",
            "a1",
        ]
        assert await ids(created_after=T0 + timedelta(minutes=1)) == ["a3", "b1", "a2"]
        assert await ids(created_before=T0 + timedelta(minutes=1)) == ["a1"]
        assert await ids(text="order") == ["a1"]
        assert await ids(text="b") == ["b1"]
        assert await ids(text="%") == []
        assert await ids(text="a_") == []
        assert await ids(source_run_id="a2") == ["a3"]

    async def test_summaries_carry_no_trigger_body(self, store: Any) -> None:
        await _insert(store, _run("r1", T0, idempotency_key="k", cancel_reason=None))
        (summary,) = (await store.search_runs(RunSearch())).runs
        assert summary.run_id == "r1" and summary.idempotency_key == "k"
        assert summary.status == RunStatus.RUNNING
        assert summary.created_at == T0
        assert not hasattr(summary, "trigger_body")

    async def test_last_run_statuses(self, store: Any) -> None:
        await _insert(
            store,
            _run("a1", T0, status=RunStatus.FAILED),
            _run("a2", T0 + timedelta(seconds=1), status=RunStatus.SUCCEEDED),
            _run("b1", T0, flow_id="flow-b"),
        )
        found = await store.last_run_statuses(["flow-a", "flow-b", "flow-c"])
        assert found == {"flow-a": RunStatus.SUCCEEDED, "flow-b": RunStatus.RUNNING}

    async def test_events_since_across_runs_in_id_order(self, store: Any) -> None:
        await _insert(store, _run("r1", T0), _run("r2", T0))
        async with store.transaction() as tx:
            await tx.append_events(
                [
                    EventRecord("r1", "RunStarted", T0),
                    EventRecord("r2", "RunStarted", T0),
                    EventRecord("r1", "StepSucceeded", T0, step_key="s"),
                ]
            )
        every = await store.events_since(0, limit=10)
        assert [(e.run_id, e.kind) for e in every] == [
            ("r1", "RunStarted"),
            ("r2", "RunStarted"),
            ("r1", "StepSucceeded"),
        ]
        ids = [e.event_id for e in every]
        assert ids == sorted(ids)
        assert [e.kind for e in await store.events_since(ids[0], limit=10)] == [
            "RunStarted",
            "StepSucceeded",
        ]
        assert [e.event_id for e in await store.events_since(0, limit=10, run_id="r2")] == [ids[1]]
        assert len(await store.events_since(0, limit=2)) == 2
        assert await store.latest_event_id() == max(ids)

    async def test_latest_event_id_of_an_empty_log_is_zero(self, store: Any) -> None:
        assert await store.latest_event_id() == 0

    async def test_run_stats_over_a_window(self, store: Any) -> None:
        runs = [
            _run("a1", T0, status=RunStatus.SUCCEEDED, completed_at=T0 + timedelta(seconds=10)),
            _run(
                "a2",
                T0 + timedelta(minutes=70),
                status=RunStatus.FAILED,
                completed_at=T0 + timedelta(minutes=70, seconds=30),
            ),
            _run("a3", T0 + timedelta(minutes=75), status=RunStatus.SUCCEEDED),
            _run("old", T0 - timedelta(days=2), status=RunStatus.SUCCEEDED),
            _run("b1", T0, flow_id="flow-b"),
        ]
        await _insert(store, *runs)
        async with store.transaction() as tx:
            for i, seconds in enumerate([1, 2, 3, 4, 100]):
                await tx.insert_attempt(
                    AttemptRecord(
                        run_id="a1",
                        step_key="work",
                        attempt=i + 1,
                        seq=i + 1,
                        status=StepStatus.SUCCEEDED,
                        started_at=T0,
                        completed_at=T0 + timedelta(seconds=seconds),
                    )
                )
            for item in range(3):
                await tx.insert_attempt(
                    AttemptRecord(
                        run_id="a2",
                        step_key=f"each.{item}.charge",
                        attempt=1,
                        seq=1,
                        status=StepStatus.SUCCEEDED,
                        started_at=T0,
                        completed_at=T0 + timedelta(seconds=2),
                    )
                )
        window = StatsQuery(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=3))
        found = await store.run_stats(window)
        by_status = {(c.flow_id, str(c.status)): c.count for c in found.by_status}
        assert by_status == {
            ("flow-a", "Succeeded"): 2,
            ("flow-a", "Failed"): 1,
            ("flow-b", "Running"): 1,
        }
        durations = {(d.flow_id, d.step_key): d for d in found.step_durations}
        work = durations[("flow-a", "work")]
        assert (work.count, work.p50, work.p95, work.max) == (
            5,
            timedelta(seconds=3),
            timedelta(seconds=100),
            timedelta(seconds=100),
        )
        assert durations[("flow-a", "each.*.charge")].count == 3
        assert [(h.hour, h.count) for h in found.runs_per_hour] == [
            (T0, 2),
            (T0 + timedelta(hours=1), 2),
        ]
        assert found.sampled is False
        (flow_a,) = found.run_durations  # a3 has no completion time; flow-b's run is going
        assert (flow_a.flow_id, flow_a.count, flow_a.p50, flow_a.p95) == (
            "flow-a",
            2,
            timedelta(seconds=10),
            timedelta(seconds=30),
        )
        one_flow = await store.run_stats(
            StatsQuery(since=window.since, until=window.until, flow_id="flow-b")
        )
        assert [(c.flow_id, c.count) for c in one_flow.by_status] == [("flow-b", 1)]
        assert one_flow.step_durations == []
        sampled = await store.run_stats(
            StatsQuery(since=window.since, until=window.until, sample_limit=2)
        )
        assert sampled.sampled is True
        assert sum(h.count for h in sampled.runs_per_hour) == 2

    async def test_a_webhook_delivery_is_recorded_once(self, store: Any) -> None:
        first = WebhookDelivery("flow-a", "hook", "d-1", T0, "r1")
        assert await store.record_webhook_delivery(first) is True
        again = WebhookDelivery("flow-a", "hook", "d-1", T0 + timedelta(seconds=1), "r2")
        assert await store.record_webhook_delivery(again) is False
        other = WebhookDelivery("flow-a", "hook", "d-2", T0 + timedelta(seconds=2), None)
        assert await store.record_webhook_delivery(other) is True
        listed = await store.list_webhook_deliveries()
        assert [(d.delivery_id, d.run_id) for d in listed] == [("d-2", None), ("d-1", "r1")]
        assert await store.list_webhook_deliveries(flow_id="flow-b") == []

    async def test_webhook_rejections_are_logged_and_counted(self, store: Any) -> None:
        for i, reason in enumerate(
            [RejectionReason.BAD_SIGNATURE, RejectionReason.BAD_SIGNATURE, RejectionReason.REPLAYED]
        ):
            await store.record_webhook_rejection(
                WebhookRejection(
                    slug="orders",
                    reason=reason,
                    detail=f"detail {i}",
                    at=T0 + timedelta(seconds=i),
                    flow_id="flow-a",
                    trigger_key="hook",
                )
            )
        await store.record_webhook_rejection(
            WebhookRejection(slug="nope", reason=RejectionReason.UNKNOWN_SLUG, detail="?", at=T0)
        )
        listed = await store.list_webhook_rejections(slug="orders")
        assert [r.detail for r in listed] == ["detail 2", "detail 1", "detail 0"]
        assert listed[0].reason == RejectionReason.REPLAYED
        assert all(r.rejection_id is not None for r in listed)
        assert len(await store.list_webhook_rejections(flow_id="flow-a", limit=2)) == 2
        assert len(await store.list_webhook_rejections()) == 4
        counts = await store.count_webhook_rejections(since=T0 + timedelta(seconds=1))
        assert counts == {"BadSignature": 1, "Replayed": 1}

    async def test_prune_webhook_log(self, store: Any) -> None:
        await store.record_webhook_delivery(WebhookDelivery("f", "h", "old", T0, None))
        await store.record_webhook_delivery(
            WebhookDelivery("f", "h", "new", T0 + timedelta(days=2), None)
        )
        await store.record_webhook_rejection(
            WebhookRejection(slug="s", reason=RejectionReason.BAD_BODY, detail="", at=T0)
        )
        assert await store.prune_webhook_log(T0 + timedelta(days=1)) == 2
        assert [d.delivery_id for d in await store.list_webhook_deliveries()] == ["new"]
        assert await store.list_webhook_rejections() == []

    @pytest.mark.parametrize("limit", [0, 501])
    def test_page_size_is_bounded(self, limit: int) -> None:
        with pytest.raises(ValueError, match="limit"):
            RunSearch(limit=limit)

    async def test_many_runs_page_through_exactly_once(self, store: Any) -> None:
        runs = [_run(uuid.uuid4().hex, T0 + timedelta(milliseconds=i % 5)) for i in range(40)]
        await _insert(store, *runs)
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.search_runs(RunSearch(limit=7, after=cursor))
            seen.extend(r.run_id for r in page.runs)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(seen) == sorted(r.run_id for r in runs)
        assert len(seen) == len(set(seen))
