"""``/api/runs``: search, read one run, its event log, and the control operations (cancel,
retry a step, rerun, deliver a signal, bulk cancel)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from floworch.api.auth import Caller, operator, reader
from floworch.api.bodies import MAX_EVENT_ID, StrictRoute, parse_json, read_limited
from floworch.api.context import ApiContext, context_of
from floworch.api.cursors import decode_cursor, encode_cursor
from floworch.api.models import (
    AttemptModel,
    BulkCancelRequest,
    BulkCancelResult,
    CancelRequest,
    CancelResult,
    EventList,
    EventModel,
    RerunStarted,
    RetryStarted,
    RunDetail,
    RunList,
    RunSummaryModel,
    SignalResult,
    StepDetail,
    WaiterModel,
)
from floworch.api.problems import ProblemError, problem_responses
from floworch.errors import RunNotFoundError
from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.api_records import RunSearch, RunSummary
from floworch.storage.records import EventRecord, RunRecord, SignalOutcome

router = APIRouter(prefix="/api/runs", tags=["runs"], route_class=StrictRoute)

RunId = Annotated[str, Path(alias="runId", description="The run id.", max_length=100)]
READ_ERRORS = problem_responses(400, 401, 403, 404, 422)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 422)


def summary_model(run: RunSummary | RunRecord) -> RunSummaryModel:
    return RunSummaryModel(
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


def event_model(event: EventRecord) -> EventModel:
    return EventModel(
        event_id=event.event_id or 0,
        run_id=event.run_id,
        kind=event.kind,
        at=event.at,
        step_key=event.step_key,
        message=event.message,
        data=event.data,
    )


async def _run(ctx: ApiContext, run_id: str) -> RunRecord:
    run = await ctx.store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(run_id)
    return run


@router.get("", response_model=RunList, responses=READ_ERRORS)
async def list_runs(
    request: Request,
    _: Annotated[Caller, Depends(reader)],
    flow_id: Annotated[str | None, Query(alias="flowId", max_length=200)] = None,
    status: Annotated[list[RunStatus] | None, Query(description="Repeat for several.")] = None,
    started_after: Annotated[datetime | None, Query(alias="startedAfter")] = None,
    started_before: Annotated[datetime | None, Query(alias="startedBefore")] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Prefix of the run id or of the idempotency key."),
    ] = None,
    source_run_id: Annotated[str | None, Query(alias="sourceRunId", max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> RunList:
    """Runs newest first, filtered, one page at a time (keyset paging), with the total."""
    ctx = context_of(request)
    for name, value in (("startedAfter", started_after), ("startedBefore", started_before)):
        if value is not None and value.tzinfo is None:
            raise ProblemError(400, f"{name} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    page = await ctx.store.search_runs(
        RunSearch(
            flow_id=flow_id,
            statuses=frozenset(status or ()),
            created_after=started_after,
            created_before=started_before,
            text=q or None,
            source_run_id=source_run_id,
            after=decode_cursor(cursor),
            limit=limit,
        )
    )
    return RunList(
        runs=[summary_model(r) for r in page.runs],
        total=page.total,
        next_cursor=encode_cursor(page.next_cursor),
    )


@router.post("/bulk-cancel", response_model=BulkCancelResult, responses=WRITE_ERRORS)
async def bulk_cancel(
    request: Request, body: BulkCancelRequest, _: Annotated[Caller, Depends(operator)]
) -> BulkCancelResult:
    """Cancels the running runs matching a filter, up to ``limit`` of them."""
    ctx = context_of(request)
    limit = min(body.limit, ctx.options.bulk_cancel_limit)
    search = RunSearch(
        flow_id=body.flow_id,
        statuses=frozenset({RunStatus.RUNNING}),
        created_after=body.started_after,
        created_before=body.started_before,
        text=body.q or None,
        limit=min(limit, 500),
    )
    first = await ctx.store.search_runs(search)
    cancelled: list[str] = []
    page = first
    while True:
        for run in page.runs:
            if len(cancelled) >= limit:
                break
            if await ctx.engine.cancel_run(run.run_id, body.reason):
                cancelled.append(run.run_id)
        if len(cancelled) >= limit or page.next_cursor is None:
            break
        page = await ctx.store.search_runs(dataclasses.replace(search, after=page.next_cursor))
    return BulkCancelResult(
        matched=first.total,
        cancelled=cancelled,
        remaining=max(0, first.total - len(cancelled)),
    )


@router.get("/{runId}", response_model=RunDetail, responses=READ_ERRORS)
async def get_run(
    request: Request, run_id: RunId, _: Annotated[Caller, Depends(reader)]
) -> RunDetail:
    """One run with every step (attempts with their own times and errors, output, When trace,
    skip reason), the signals it waits for and its reruns."""
    ctx = context_of(request)
    run = await _run(ctx, run_id)
    steps = await ctx.store.get_steps(run_id)
    attempts = await ctx.store.get_attempts(run_id)
    waiters = await ctx.store.list_waiters(run_id)
    reruns = await ctx.store.search_runs(RunSearch(source_run_id=run_id, limit=100))
    by_step: dict[str, list[AttemptModel]] = {}
    for a in attempts:
        by_step.setdefault(a.step_key, []).append(
            AttemptModel(
                attempt=a.attempt,
                seq=a.seq,
                status=StepStatus(a.status),
                started_at=a.started_at,
                completed_at=a.completed_at,
                error=a.error,
            )
        )
    return RunDetail(
        **summary_model(run).model_dump(),
        trigger_body=run.trigger_body,
        trigger_headers=dict(run.trigger_headers),
        timeout_at=run.timeout_at,
        steps=[
            StepDetail(
                step_key=s.step_key,
                step_type=s.step_type,
                status=StepStatus(s.status),
                attempt=s.attempt,
                attempts=by_step.get(s.step_key, []),
                inputs=s.inputs,
                output=s.output,
                error=s.error,
                when_trace=s.when_trace,
                skip_reason=s.skip_reason,
                created_at=s.created_at,
                started_at=s.started_at,
                completed_at=s.completed_at,
                due_at=s.due_at,
            )
            for s in steps
        ],
        waiting_for=[
            WaiterModel(
                step_key=w.step_key,
                signal_name=w.signal_name,
                since=w.created_at,
                expires_at=w.expires_at,
                delivered_at=w.delivered_at,
            )
            for w in waiters
        ],
        reruns=[r.run_id for r in reruns.runs],
    )


@router.get("/{runId}/events", response_model=EventList, responses=READ_ERRORS)
async def run_events(
    request: Request,
    run_id: RunId,
    _: Annotated[Caller, Depends(reader)],
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID, description="Events after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> EventList:
    """The run's event log in order, one page after ``after``."""
    ctx = context_of(request)
    await _run(ctx, run_id)
    events = await ctx.store.list_events(run_id, after_id=after, limit=limit)
    last = events[-1].event_id if events else None
    return EventList(events=[event_model(e) for e in events], next_after=last or after)


@router.post("/{runId}/cancel", response_model=CancelResult, responses=WRITE_ERRORS)
async def cancel_run(
    request: Request,
    run_id: RunId,
    _: Annotated[Caller, Depends(operator)],
    body: CancelRequest | None = None,
) -> CancelResult:
    """Cancels a running run (409 when it has already finished)."""
    ctx = context_of(request)
    reason = (body or CancelRequest()).reason
    if not await ctx.engine.cancel_run(run_id, reason):
        run = await _run(ctx, run_id)
        raise ProblemError(409, f"run {run_id} has already finished ({run.status})")
    return CancelResult(run_id=run_id, cancelled=True)


@router.post(
    "/{runId}/steps/{stepKey}/retry",
    status_code=202,
    response_model=RetryStarted,
    responses=WRITE_ERRORS,
)
async def retry_step(
    request: Request,
    run_id: RunId,
    step_key: Annotated[str, Path(alias="stepKey", max_length=300)],
    _: Annotated[Caller, Depends(operator)],
) -> RetryStarted:
    """Runs a Failed, TimedOut or Cancelled step again; its step message is sent at once."""
    ctx = context_of(request)
    await ctx.engine.retry_step(run_id, step_key)
    return RetryStarted(run_id=run_id, step_key=step_key)


@router.post("/{runId}/rerun", status_code=202, response_model=RerunStarted, responses=WRITE_ERRORS)
async def rerun(
    request: Request, response: Response, run_id: RunId, _: Annotated[Caller, Depends(operator)]
) -> RerunStarted:
    """Starts a new run from this run's stored trigger data (lineage: ``sourceRunId``)."""
    ctx = context_of(request)
    result = await ctx.engine.rerun(run_id)
    if result.run_id is None:
        run = await _run(ctx, run_id)
        raise ProblemError(409, f"flow {run.flow_id!r} is disabled", kind="flow-disabled")
    response.headers["Location"] = f"/api/runs/{result.run_id}"
    return RerunStarted(run_id=result.run_id, source_run_id=run_id)


@router.post(
    "/{runId}/signals/{name}",
    response_model=SignalResult,
    responses=WRITE_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "The signal payload, any JSON value (the waiting step's output).",
            "content": {"application/json": {"schema": {}}},
        }
    },
)
async def deliver_signal(
    request: Request,
    run_id: RunId,
    name: Annotated[str, Path(max_length=100)],
    _: Annotated[Caller, Depends(operator)],
) -> SignalResult:
    """Delivers a signal: ``Delivered`` (a waiting step resumed), ``Buffered`` (no step waits
    yet; the first to wait gets it) or ``AlreadyDelivered``."""
    ctx = context_of(request)
    payload = parse_json(
        await read_limited(request, ctx.options.max_body_bytes), what="the payload"
    )
    outcome = await ctx.engine.deliver_signal(run_id, name, payload)
    if outcome == SignalOutcome.NOT_FOUND:
        run = await _run(ctx, run_id)
        raise ProblemError(409, f"run {run_id} has finished ({run.status}); it takes no signals")
    return SignalResult(run_id=run_id, signal_name=name, outcome=outcome)
