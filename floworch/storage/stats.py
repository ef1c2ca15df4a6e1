"""Turning rows into the dashboard's figures, the same way for every store adapter.

Percentiles are computed here rather than in SQL: SQLite has no ``percentile_cont``, and one
definition (nearest rank) for every database keeps the figures comparable.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from floworch.model.instance_key import InstanceKey, InstanceKeyError
from floworch.model.statuses import RunStatus
from floworch.storage.api_records import HourlyCount, RunDuration, StatusCount, StepDuration


def nearest_rank(sorted_values: list[timedelta], fraction: float) -> timedelta:
    """The nearest-rank percentile of an ascending, non-empty list (0 < fraction <= 1)."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def step_durations(rows: Iterable[tuple[str, str, timedelta]]) -> list[StepDuration]:
    """p50/p95/max per (flow, step) from ``(flow_id, step_key, duration)`` rows.

    ForEach body steps (``each.3.charge``) are grouped under their pattern (``each.*.charge``),
    so a loop of a thousand items gives one line, not a thousand.
    """
    groups: dict[tuple[str, str], list[timedelta]] = defaultdict(list)
    for flow_id, step_key, duration in rows:
        groups[(flow_id, step_pattern(step_key))].append(max(duration, timedelta(0)))
    found: list[StepDuration] = []
    for (flow_id, key), values in sorted(groups.items()):
        values.sort()
        found.append(
            StepDuration(
                flow_id=flow_id,
                step_key=key,
                count=len(values),
                p50=nearest_rank(values, 0.50),
                p95=nearest_rank(values, 0.95),
                max=values[-1],
            )
        )
    return found


def step_pattern(step_key: str) -> str:
    """``each.3.charge`` -> ``each.*.charge`` (ForEach item indexes replaced by ``*``)."""
    try:
        return InstanceKey.parse(step_key).pattern
    except InstanceKeyError:
        return step_key  # not written by floworch: grouped under itself


def hourly(created: Iterable[datetime]) -> list[HourlyCount]:
    """Runs per UTC hour, oldest hour first (hours with no run are absent)."""
    counts = Counter(at.replace(minute=0, second=0, microsecond=0) for at in created)
    return [HourlyCount(hour, count) for hour, count in sorted(counts.items())]


def status_counts(rows: Iterable[tuple[str, str, int]]) -> list[StatusCount]:
    """``(flow_id, status, count)`` rows as records, by flow then status."""
    return [
        StatusCount(flow_id, RunStatus(status), int(count))
        for flow_id, status, count in sorted(rows)
    ]


def run_durations(
    rows: Iterable[tuple[str, datetime, datetime | None]],
) -> list[RunDuration]:
    """p50/p95/max run duration per flow from ``(flow_id, created_at, completed_at)`` rows
    (runs still going are left out)."""
    groups: dict[str, list[timedelta]] = defaultdict(list)
    for flow_id, created, completed in rows:
        if completed is not None:
            groups[flow_id].append(max(completed - created, timedelta(0)))
    found: list[RunDuration] = []
    for flow_id, values in sorted(groups.items()):
        values.sort()
        found.append(
            RunDuration(
                flow_id=flow_id,
                count=len(values),
                p50=nearest_rank(values, 0.50),
                p95=nearest_rank(values, 0.95),
                max=values[-1],
            )
        )
    return found
