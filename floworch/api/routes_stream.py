"""Live updates: the event log across runs as JSON pages (``GET /api/events?since=``) and as
server-sent events (``GET /api/stream``, ``GET /api/runs/{runId}/stream``).

Each SSE message is ``id: <eventId>``, ``event: <kind>``, ``data: <event JSON>``. A browser's
EventSource reconnects with ``Last-Event-ID`` and continues where it stopped; ``?since=`` does
the same for other clients. A run's stream ends with an ``end`` message once the run finished.
Idle streams send a comment line every ``stream_heartbeat``; every stream ends after
``stream_max`` (the client reconnects).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from floworch.api.auth import Caller, reader
from floworch.api.bodies import MAX_EVENT_ID, StrictRoute
from floworch.api.context import ApiContext, context_of
from floworch.api.models import EventList, dump
from floworch.api.problems import problem_responses
from floworch.api.routes_runs import event_model
from floworch.errors import RunNotFoundError
from floworch.model.statuses import RunStatus

router = APIRouter(tags=["events"], route_class=StrictRoute)

_PAGE = 500
_SSE = {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "SSE"}


@router.get("/api/events", response_model=EventList, responses=problem_responses(401, 403, 422))
async def events(
    request: Request,
    _: Annotated[Caller, Depends(reader)],
    since: Annotated[int, Query(ge=0, le=MAX_EVENT_ID, description="Events after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    run_id: Annotated[str | None, Query(alias="runId", max_length=100)] = None,
    tail: Annotated[
        bool,
        Query(description="Skip the history: no events, nextAfter is the newest event's id."),
    ] = False,
) -> EventList:
    """Events of every run (or one) after ``since``, in id order; poll with ``nextAfter``."""
    store = context_of(request).store
    if tail:
        return EventList(events=[], next_after=await store.latest_event_id())
    found = await store.events_since(since, limit=limit, run_id=run_id)
    last = found[-1].event_id if found else None
    return EventList(events=[event_model(e) for e in found], next_after=last or since)


def _start(since: int, last_event_id: str | None) -> int:
    if last_event_id is not None and last_event_id.strip().isdigit():
        return max(since, int(last_event_id.strip()))
    return since


async def _sse(
    request: Request, ctx: ApiContext, after: int, run_id: str | None
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    poll = ctx.options.stream_poll.total_seconds()
    heartbeat = ctx.options.stream_heartbeat.total_seconds()
    ends_at = loop.time() + ctx.options.stream_max.total_seconds()
    quiet_since = loop.time()
    yield b"retry: 2000\n\n"
    while loop.time() < ends_at and not await request.is_disconnected():
        found = await ctx.store.events_since(after, limit=_PAGE, run_id=run_id)
        for event in found:
            after = event.event_id or after
            data = json.dumps(dump(event_model(event)), separators=(",", ":"))
            yield f"id: {after}\nevent: {event.kind}\ndata: {data}\n\n".encode()
        if found:
            quiet_since = loop.time()
            if len(found) == _PAGE:
                continue
        elif run_id is not None:
            run = await ctx.store.get_run(run_id)
            if run is None or RunStatus(run.status).is_terminal:
                status = run.status if run else "deleted"
                yield f"event: end\ndata: {json.dumps({'status': str(status)})}\n\n".encode()
                return
        if loop.time() - quiet_since >= heartbeat:
            quiet_since = loop.time()
            yield b": keep-alive\n\n"
        await asyncio.sleep(poll)


def _stream(request: Request, ctx: ApiContext, after: int, run_id: str | None) -> StreamingResponse:
    return StreamingResponse(
        _sse(request, ctx, after, run_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/api/stream",
    response_class=StreamingResponse,
    responses={200: _SSE, **problem_responses(401, 403, 422)},
)
async def stream(
    request: Request,
    _: Annotated[Caller, Depends(reader)],
    since: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=30)] = None,
) -> StreamingResponse:
    """Every run's events as server-sent events, from after ``since`` (or ``Last-Event-ID``)."""
    return _stream(request, context_of(request), _start(since, last_event_id), None)


@router.get(
    "/api/runs/{runId}/stream",
    response_class=StreamingResponse,
    responses={200: _SSE, **problem_responses(401, 403, 404, 422)},
)
async def run_stream(
    request: Request,
    run_id: Annotated[str, Path(alias="runId", max_length=100)],
    _: Annotated[Caller, Depends(reader)],
    since: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=30)] = None,
) -> StreamingResponse:
    """One run's events as server-sent events; ends with ``event: end`` when the run finished."""
    ctx = context_of(request)
    if await ctx.store.get_run(run_id) is None:
        raise RunNotFoundError(run_id)
    return _stream(request, ctx, _start(since, last_event_id), run_id)
