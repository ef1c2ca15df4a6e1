"""``/api/schedules``: cron triggers with their next fire times; pause, resume, override the
expression, fire now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from floworch.api.auth import Caller, operator, reader
from floworch.api.bodies import StrictRoute
from floworch.api.context import ApiContext, context_of
from floworch.api.headers import trigger_headers
from floworch.api.models import CronOverride, ScheduleInfo, ScheduleList, TriggerStarted
from floworch.api.problems import problem_responses
from floworch.api.routes_flows import started
from floworch.engine.schedules import effective_cron, next_fire
from floworch.errors import TriggerNotFoundError
from floworch.model import CronTrigger, FlowDefinition
from floworch.storage.records import ScheduleState
from floworch.telemetry.hooks import TriggerOrigin

router = APIRouter(prefix="/api/schedules", tags=["schedules"], route_class=StrictRoute)

FlowId = Annotated[str, Path(alias="flowId", max_length=200)]
TriggerKey = Annotated[str, Path(alias="triggerKey", max_length=100)]
ERRORS = problem_responses(400, 401, 403, 404, 409, 422)


def _cron(ctx: ApiContext, flow_id: str, key: str) -> tuple[FlowDefinition, CronTrigger]:
    flow = ctx.engine.flows.get(flow_id)
    trigger = flow.triggers.get(key)
    if not isinstance(trigger, CronTrigger):
        crons = [k for k, t in flow.triggers.items() if isinstance(t, CronTrigger)]
        raise TriggerNotFoundError(flow_id, key, crons)
    return flow, trigger


async def _info(
    ctx: ApiContext, flow: FlowDefinition, key: str, trigger: CronTrigger, enabled: bool
) -> ScheduleInfo:
    state = await ctx.store.get_schedule_state(flow.id, key) or ScheduleState(flow.id, key)
    cron = effective_cron(trigger, state.cron_override)
    now = ctx.engine.clock.now()
    upcoming = state.next_fire_at
    if upcoming is None or upcoming <= now:
        upcoming = next_fire(cron, now, trigger.timezone)
    active = enabled and not state.paused
    times = [upcoming] if active else []
    while active and len(times) < ctx.options.schedule_preview:
        times.append(next_fire(cron, times[-1], trigger.timezone))
    return ScheduleInfo(
        flow_id=flow.id,
        trigger_key=key,
        cron=trigger.cron,
        cron_override=state.cron_override,
        effective_cron=cron,
        timezone=trigger.timezone,
        paused=state.paused,
        next_fire_at=upcoming if active else None,
        upcoming=times,
        last_fire_at=state.last_fire_at,
        flow_enabled=enabled,
    )


async def _enabled(ctx: ApiContext, flow: FlowDefinition) -> bool:
    record = await ctx.store.get_flow(flow.id)
    return record.enabled if record is not None else flow.manifest.enabled


@router.get("", response_model=ScheduleList, responses=problem_responses(401, 403))
async def list_schedules(request: Request, _: Annotated[Caller, Depends(reader)]) -> ScheduleList:
    """Every cron trigger with its expression in force and its next fire time (none while the
    schedule is paused or the flow disabled)."""
    ctx = context_of(request)
    found: list[ScheduleInfo] = []
    for flow in ctx.engine.flows:
        enabled = await _enabled(ctx, flow)
        for key, trigger in flow.triggers.items():
            if isinstance(trigger, CronTrigger):
                found.append(await _info(ctx, flow, key, trigger, enabled))
    return ScheduleList(schedules=found)


async def _changed(ctx: ApiContext, flow_id: str, key: str, **changes: object) -> ScheduleInfo:
    flow, trigger = _cron(ctx, flow_id, key)
    await ctx.engine.set_schedule(flow_id, key, **changes)  # type: ignore[arg-type]
    return await _info(ctx, flow, key, trigger, await _enabled(ctx, flow))


@router.post("/{flowId}/{triggerKey}/pause", response_model=ScheduleInfo, responses=ERRORS)
async def pause(
    request: Request, flow_id: FlowId, key: TriggerKey, _: Annotated[Caller, Depends(operator)]
) -> ScheduleInfo:
    """Pauses a cron trigger on every replica (fire times while paused are skipped)."""
    return await _changed(context_of(request), flow_id, key, paused=True)


@router.post("/{flowId}/{triggerKey}/resume", response_model=ScheduleInfo, responses=ERRORS)
async def resume(
    request: Request, flow_id: FlowId, key: TriggerKey, _: Annotated[Caller, Depends(operator)]
) -> ScheduleInfo:
    """Resumes a paused cron trigger."""
    return await _changed(context_of(request), flow_id, key, paused=False)


@router.put("/{flowId}/{triggerKey}/cron", response_model=ScheduleInfo, responses=ERRORS)
async def set_cron(
    request: Request,
    flow_id: FlowId,
    key: TriggerKey,
    body: CronOverride,
    _: Annotated[Caller, Depends(operator)],
) -> ScheduleInfo:
    """Overrides the cron expression (kept across restarts); ``null`` restores the manifest's."""
    if body.cron is None:
        return await _changed(context_of(request), flow_id, key, clear_override=True)
    return await _changed(context_of(request), flow_id, key, cron_override=body.cron)


@router.post(
    "/{flowId}/{triggerKey}/fire",
    status_code=202,
    response_model=TriggerStarted,
    responses=ERRORS,
)
async def fire(
    request: Request,
    response: Response,
    flow_id: FlowId,
    key: TriggerKey,
    _: Annotated[Caller, Depends(operator)],
) -> TriggerStarted:
    """Starts a run of the cron trigger now (also while paused); the schedule is unchanged."""
    ctx = context_of(request)
    flow, trigger = _cron(ctx, flow_id, key)
    now = ctx.engine.clock.now()
    headers = trigger_headers(
        {"X-Floworch-Fire-Time": now.isoformat(), "X-Floworch-Fired-By": "api"}
    )
    result = await ctx.engine.trigger(
        flow.id, key, trigger.body, headers, origin=TriggerOrigin.http(request.headers)
    )
    return started(result, response, flow.id)
