"""``/api/flows``: list, read, enable/disable, and start runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from floworch.api.auth import Caller, operator, reader
from floworch.api.bodies import StrictRoute, parse_json, read_limited
from floworch.api.context import ApiContext, context_of
from floworch.api.headers import trigger_headers
from floworch.api.models import (
    FlowDetail,
    FlowGraph,
    FlowList,
    FlowSummary,
    GraphEdge,
    GraphNode,
    TriggerInfo,
    TriggerStarted,
)
from floworch.api.problems import ProblemError, problem_responses
from floworch.engine.engine import TriggerResult
from floworch.model import FlowDefinition, to_mermaid
from floworch.model.triggers import CronTrigger, ServiceBusTrigger, WebhookTrigger
from floworch.telemetry.hooks import TriggerOrigin

router = APIRouter(prefix="/api/flows", tags=["flows"], route_class=StrictRoute)

FlowId = Annotated[str, Path(alias="flowId", description="The flow id.")]


def trigger_infos(flow: FlowDefinition) -> list[TriggerInfo]:
    infos: list[TriggerInfo] = []
    for key, trigger in flow.triggers.items():
        info = TriggerInfo(key=key, type=trigger.type)
        if isinstance(trigger, WebhookTrigger):
            info.slug = trigger.slug
        elif isinstance(trigger, CronTrigger):
            info.cron = trigger.cron
        elif isinstance(trigger, ServiceBusTrigger):
            info.queue = trigger.queue
        infos.append(info)
    return infos


async def _summaries(ctx: ApiContext, flows: list[FlowDefinition]) -> list[FlowSummary]:
    stored = {record.flow_id: record for record in await ctx.store.list_flows()}
    last = await ctx.store.last_run_statuses([flow.id for flow in flows])
    return [
        FlowSummary(
            flow_id=flow.id,
            version=flow.version,
            description=flow.manifest.description,
            enabled=stored[flow.id].enabled if flow.id in stored else flow.manifest.enabled,
            manifest_enabled=flow.manifest.enabled,
            triggers=trigger_infos(flow),
            step_count=len(flow.manifest.steps),
            last_run_status=last.get(flow.id),
        )
        for flow in flows
    ]


@router.get("", response_model=FlowList, responses=problem_responses(401, 403))
async def list_flows(request: Request, _: Annotated[Caller, Depends(reader)]) -> FlowList:
    """Every flow this host runs, with its enabled flag in force and its newest run's status."""
    ctx = context_of(request)
    return FlowList(flows=await _summaries(ctx, list(ctx.engine.flows)))


@router.get("/{flowId}", response_model=FlowDetail, responses=problem_responses(401, 403, 404))
async def get_flow(
    request: Request, flow_id: FlowId, _: Annotated[Caller, Depends(reader)]
) -> FlowDetail:
    """One flow: its summary, its manifest as JSON, and a Mermaid flowchart."""
    ctx = context_of(request)
    flow = ctx.engine.flows.get(flow_id)
    (summary,) = await _summaries(ctx, [flow])
    return FlowDetail(
        **summary.model_dump(),
        manifest=flow.manifest.to_dict(),
        mermaid=to_mermaid(flow.manifest),
    )


@router.get("/{flowId}/graph", response_model=FlowGraph, responses=problem_responses(401, 403, 404))
async def flow_graph(
    request: Request, flow_id: FlowId, _: Annotated[Caller, Depends(reader)]
) -> FlowGraph:
    """The flow's DAG laid out left to right (ForEach bodies as groups), ready to draw."""
    from floworch.dashboard.layout import layout_flow

    flow = context_of(request).engine.flows.get(flow_id)
    drawn = layout_flow(flow.manifest)
    return FlowGraph(
        flow_id=flow.id,
        width=drawn.width,
        height=drawn.height,
        nodes=[
            GraphNode(
                key=n.key,
                step_key=n.step_key,
                type=n.type,
                x=n.x,
                y=n.y,
                width=n.width,
                height=n.height,
                parent=n.parent,
                group=n.group,
                depth=n.depth,
            )
            for n in drawn.nodes
        ],
        edges=[
            GraphEdge(source=e.source, target=e.target, points=list(e.points), label=e.label)
            for e in drawn.edges
        ],
    )


async def _set_enabled(request: Request, flow_id: str, enabled: bool) -> FlowSummary:
    ctx = context_of(request)
    flow = ctx.engine.flows.get(flow_id)
    await ctx.engine.set_flow_enabled(flow_id, enabled)
    (summary,) = await _summaries(ctx, [flow])
    return summary


@router.post(
    "/{flowId}/enable", response_model=FlowSummary, responses=problem_responses(401, 403, 404)
)
async def enable_flow(
    request: Request,
    flow_id: FlowId,
    _: Annotated[Caller, Depends(operator)],
) -> FlowSummary:
    """Enables a flow on every host sharing the database (kept across restarts)."""
    return await _set_enabled(request, flow_id, True)


@router.post(
    "/{flowId}/disable", response_model=FlowSummary, responses=problem_responses(401, 403, 404)
)
async def disable_flow(
    request: Request,
    flow_id: FlowId,
    _: Annotated[Caller, Depends(operator)],
) -> FlowSummary:
    """Disables a flow: it starts no new runs; runs already going finish."""
    return await _set_enabled(request, flow_id, False)


def started(result: TriggerResult, response: Response, flow_id: str) -> TriggerStarted:
    """The 202 answer of a trigger (409 for a disabled flow)."""
    if result.disabled or result.run_id is None:
        raise ProblemError(
            409,
            f"flow {flow_id!r} is disabled; enable it with POST /api/flows/{flow_id}/enable",
            kind="flow-disabled",
        )
    response.headers["Location"] = f"/api/runs/{result.run_id}"
    return TriggerStarted(run_id=result.run_id, duplicate=result.duplicate)


@router.post(
    "/{flowId}/runs",
    status_code=202,
    response_model=TriggerStarted,
    responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "The trigger body, any JSON value (triggerBody()).",
            "content": {"application/json": {"schema": {}}},
        }
    },
)
async def trigger_flow(
    request: Request,
    response: Response,
    flow_id: FlowId,
    _: Annotated[Caller, Depends(operator)],
    trigger: Annotated[
        str | None, Query(description="The manifest trigger (default: the first Manual one).")
    ] = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=200, min_length=1)
    ] = None,
) -> TriggerStarted:
    """Starts a run. The body becomes ``triggerBody()``, the headers ``triggerHeaders()``
    (credentials excepted); a repeated ``Idempotency-Key`` returns the first run."""
    ctx = context_of(request)
    flow = ctx.engine.flows.get(flow_id)
    raw = await read_limited(request, ctx.options.max_body_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw.strip() and content_type != "application/json" and not content_type.endswith("+json"):
        raise ProblemError(
            415,
            f"send the trigger body as JSON (Content-Type: application/json), not {content_type!r}",
        )
    body = parse_json(raw, what="the trigger body")
    result = await ctx.engine.trigger(
        flow.id,
        trigger,
        body,
        trigger_headers(request.headers, ["idempotency-key"]),
        idempotency_key,
        origin=TriggerOrigin.http(request.headers),
    )
    return started(result, response, flow.id)
