"""Statement builders for the control plane's reads: the run search (keyset paging, no trigger
bodies), newest run per flow, the event log across runs and the rows stats are computed from.

Like :mod:`floworch.storage.sql.scan_statements`, each builder returns a Core statement, so the
unit tests compile every one for every dialect.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from floworch.storage.api_records import RunSearch, StatsQuery
from floworch.storage.sql.schema import events, runs, step_attempts

SUMMARY_COLUMNS = (
    runs.c.run_id,
    runs.c.flow_id,
    runs.c.flow_version,
    runs.c.trigger_key,
    runs.c.status,
    runs.c.created_at,
    runs.c.completed_at,
    runs.c.idempotency_key,
    runs.c.source_run_id,
    runs.c.cancel_reason,
)
"""What a run list reads: never ``trigger_body`` nor ``trigger_headers``."""


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filters(search: RunSearch) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if search.flow_id is not None:
        where.append(runs.c.flow_id == search.flow_id)
    if search.statuses:
        where.append(runs.c.status.in_(sorted(str(s) for s in search.statuses)))
    if search.created_after is not None:
        where.append(runs.c.created_at >= search.created_after)
    if search.created_before is not None:
        where.append(runs.c.created_at < search.created_before)
    if search.source_run_id is not None:
        where.append(runs.c.source_run_id == search.source_run_id)
    if search.text:
        pattern = _escape_like(search.text) + "%"
        where.append(
            or_(
                runs.c.run_id.like(pattern, escape="\\"),
                runs.c.idempotency_key.like(pattern, escape="\\"),
            )
        )
    return where


def search_runs(search: RunSearch) -> Select[Any]:
    """One page (plus one row, to know whether another page follows), newest first."""
    where = _filters(search)
    if search.after is not None:
        after = search.after
        where.append(
            or_(
                runs.c.created_at < after.created_at,
                and_(runs.c.created_at == after.created_at, runs.c.run_id < after.run_id),
            )
        )
    return (
        select(*SUMMARY_COLUMNS)
        .where(*where)
        .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        .limit(search.limit + 1)
    )


def count_runs(search: RunSearch) -> Select[Any]:
    """How many runs match the search's filters (the cursor ignored)."""
    return select(func.count()).select_from(runs).where(*_filters(search))


def newest_run_status(flow_id: str) -> Select[Any]:
    """The status of a flow's newest run (one index seek on ``(flow_id, created_at, run_id)``)."""
    return (
        select(runs.c.status)
        .where(runs.c.flow_id == flow_id)
        .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        .limit(1)
    )


def latest_event_id() -> Select[Any]:
    """The highest event id (None when the log is empty)."""
    return select(func.max(events.c.event_id))


def events_since(after_id: int, limit: int, run_id: str | None) -> Select[Any]:
    """Events after an id, in id order, across runs or for one run."""
    where = [events.c.event_id > after_id]
    if run_id is not None:
        where.append(events.c.run_id == run_id)
    return select(events).where(*where).order_by(events.c.event_id).limit(limit)


def _window(query: StatsQuery) -> list[ColumnElement[bool]]:
    where = [runs.c.created_at >= query.since, runs.c.created_at < query.until]
    if query.flow_id is not None:
        where.append(runs.c.flow_id == query.flow_id)
    return where


def status_counts(query: StatsQuery) -> Select[Any]:
    """``(flow_id, status, count)`` of the runs created in the window."""
    return (
        select(runs.c.flow_id, runs.c.status, func.count())
        .where(*_window(query))
        .group_by(runs.c.flow_id, runs.c.status)
    )


def run_created_times(query: StatsQuery) -> Select[Any]:
    """``(created_at, flow_id, completed_at)`` of the runs in the window, newest first, at most
    ``sample_limit + 1``."""
    return (
        select(runs.c.created_at, runs.c.flow_id, runs.c.completed_at)
        .where(*_window(query))
        .order_by(runs.c.created_at.desc())
        .limit(query.sample_limit + 1)
    )


def attempt_durations(query: StatsQuery) -> Select[Any]:
    """``(flow_id, step_key, started_at, completed_at)`` of attempts completed in the window,
    newest first, at most ``sample_limit + 1``."""
    where = [
        step_attempts.c.completed_at >= query.since,
        step_attempts.c.completed_at < query.until,
        step_attempts.c.started_at.is_not(None),
    ]
    if query.flow_id is not None:
        where.append(runs.c.flow_id == query.flow_id)
    return (
        select(
            runs.c.flow_id,
            step_attempts.c.step_key,
            step_attempts.c.started_at,
            step_attempts.c.completed_at,
        )
        .select_from(step_attempts.join(runs, runs.c.run_id == step_attempts.c.run_id))
        .where(*where)
        .order_by(step_attempts.c.completed_at.desc())
        .limit(query.sample_limit + 1)
    )
