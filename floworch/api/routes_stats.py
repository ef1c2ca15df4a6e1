"""``/api/stats``: the dashboard's figures over a window."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from floworch.api.auth import Caller, reader
from floworch.api.bodies import StrictRoute
from floworch.api.context import context_of
from floworch.api.models import (
    HourlyCountModel,
    RunDurationModel,
    StatsModel,
    StatusCountModel,
    StepDurationModel,
)
from floworch.api.problems import ProblemError, problem_responses
from floworch.storage.api_records import StatsQuery

router = APIRouter(prefix="/api/stats", tags=["stats"], route_class=StrictRoute)


def _ms(value: timedelta) -> float:
    return round(value.total_seconds() * 1000, 3)


@router.get("", response_model=StatsModel, responses=problem_responses(400, 401, 403, 422))
async def stats(
    request: Request,
    _: Annotated[Caller, Depends(reader)],
    hours: Annotated[float, Query(gt=0, le=24 * 31, description="The window, in hours.")] = 24,
    flow_id: Annotated[str | None, Query(alias="flowId", max_length=200)] = None,
) -> StatsModel:
    """Runs by status per flow (runs created in the window), step duration p50/p95 per step
    (attempts completed in the window), run duration p50/p95 per flow, runs per hour, and the
    host's count of dead-lettered step messages."""
    ctx = context_of(request)
    window = timedelta(hours=hours)
    if window > ctx.options.max_stats_window:
        raise ProblemError(400, f"the window is longer than {ctx.options.max_stats_window}")
    until = ctx.engine.clock.now()
    since = until - window
    found = await ctx.store.run_stats(StatsQuery(since=since, until=until, flow_id=flow_id))
    rejections = await ctx.store.count_webhook_rejections(since=since)
    return StatsModel(
        since=since,
        until=until,
        by_status=[
            StatusCountModel(flow_id=c.flow_id, status=c.status, count=c.count)
            for c in found.by_status
        ],
        step_durations=[
            StepDurationModel(
                flow_id=d.flow_id,
                step_key=d.step_key,
                count=d.count,
                p50_ms=_ms(d.p50),
                p95_ms=_ms(d.p95),
                max_ms=_ms(d.max),
            )
            for d in found.step_durations
        ],
        runs_per_hour=[HourlyCountModel(hour=h.hour, count=h.count) for h in found.runs_per_hour],
        run_durations=[
            RunDurationModel(
                flow_id=d.flow_id,
                count=d.count,
                p50_ms=_ms(d.p50),
                p95_ms=_ms(d.p95),
                max_ms=_ms(d.max),
            )
            for d in found.run_durations
        ],
        webhook_rejections=rejections,
        dead_lettered=await ctx.dead_letters() if ctx.dead_letters is not None else None,
        sampled=found.sampled,
    )
