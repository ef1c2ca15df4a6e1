"""``/api/webhooks``: signed deliveries from third parties start runs; the delivery and
rejection logs are readable by operators and readers."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from floworch.api.auth import Caller, reader
from floworch.api.bodies import StrictRoute, parse_json, read_limited
from floworch.api.context import ApiContext, context_of
from floworch.api.headers import trigger_headers
from floworch.api.models import (
    DeliveryList,
    DeliveryModel,
    RejectionList,
    RejectionModel,
    WebhookAccepted,
    WebhookInfo,
    WebhookList,
)
from floworch.api.problems import ProblemError, problem_responses
from floworch.api.webhooks import Refusal, WebhookRoute, delivery_id, verify, webhook_routes
from floworch.storage.api_records import RejectionReason, WebhookDelivery, WebhookRejection
from floworch.telemetry.hooks import TriggerOrigin

log = logging.getLogger("floworch.api.webhooks")

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"], route_class=StrictRoute)

_KINDS = {
    RejectionReason.UNKNOWN_SLUG: "unknown-webhook",
    RejectionReason.REPLAYED: "replayed-delivery",
    RejectionReason.FLOW_DISABLED: "flow-disabled",
}


def _limit(ctx: ApiContext, route: WebhookRoute) -> int:
    return route.trigger.max_body_bytes or ctx.options.max_body_bytes


@router.get("", response_model=WebhookList, responses=problem_responses(401, 403))
async def list_webhooks(request: Request, _: Annotated[Caller, Depends(reader)]) -> WebhookList:
    """The webhook triggers this host serves and their settings (secrets are never shown)."""
    ctx = context_of(request)
    return WebhookList(
        webhooks=[
            WebhookInfo(
                slug=slug,
                flow_id=route.flow.id,
                trigger_key=route.trigger_key,
                url=f"/api/webhooks/{slug}",
                signature_header=route.trigger.signature_header,
                signature_format=route.trigger.signature_format,
                timestamp_header=route.trigger.timestamp_header,
                delivery_id_header=route.trigger.delivery_id_header,
                replay_window_seconds=route.trigger.replay_window_seconds,
                max_body_bytes=_limit(ctx, route),
                content_types=list(route.trigger.content_types),
                secret_configured=(route.flow.id, route.trigger_key) in ctx.webhook_secrets,
            )
            for slug, route in sorted(webhook_routes(ctx.engine.flows).items())
        ]
    )


@router.get("/deliveries", response_model=DeliveryList, responses=problem_responses(401, 403, 422))
async def list_deliveries(
    request: Request,
    _: Annotated[Caller, Depends(reader)],
    flow_id: Annotated[str | None, Query(alias="flowId", max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryList:
    """Accepted deliveries, newest first."""
    found = await context_of(request).store.list_webhook_deliveries(flow_id=flow_id, limit=limit)
    return DeliveryList(
        deliveries=[
            DeliveryModel(
                flow_id=d.flow_id,
                trigger_key=d.trigger_key,
                delivery_id=d.delivery_id,
                received_at=d.received_at,
                run_id=d.run_id,
            )
            for d in found
        ]
    )


@router.get("/rejections", response_model=RejectionList, responses=problem_responses(401, 403, 422))
async def list_rejections(
    request: Request,
    _: Annotated[Caller, Depends(reader)],
    flow_id: Annotated[str | None, Query(alias="flowId", max_length=200)] = None,
    slug: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RejectionList:
    """Refused deliveries with their reason, newest first."""
    found = await context_of(request).store.list_webhook_rejections(
        flow_id=flow_id, slug=slug, limit=limit
    )
    return RejectionList(
        rejections=[
            RejectionModel(
                rejection_id=r.rejection_id,
                slug=r.slug,
                reason=str(r.reason),
                detail=r.detail,
                at=r.at,
                flow_id=r.flow_id,
                trigger_key=r.trigger_key,
                delivery_id=r.delivery_id,
            )
            for r in found
        ]
    )


def _parse(route: WebhookRoute, content_type: str, raw: bytes) -> Any:
    if content_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise Refusal(RejectionReason.BAD_BODY, 400, "the form body is not UTF-8") from exc
        return {name: values[0] if len(values) == 1 else values for name, values in fields.items()}
    try:
        return parse_json(raw, what="the webhook body")
    except ProblemError as exc:
        raise Refusal(RejectionReason.BAD_BODY, 400, str(exc.detail)) from exc


async def _accept(ctx: ApiContext, request: Request, slug: str) -> WebhookAccepted:
    route = webhook_routes(ctx.engine.flows).get(slug)
    if route is None:
        raise Refusal(RejectionReason.UNKNOWN_SLUG, 404, f"no webhook is served at {slug!r}")
    trigger = route.trigger
    if trigger.rate_limit_per_minute is not None and not ctx.limiter.allow(
        slug, trigger.rate_limit_per_minute
    ):
        raise Refusal(
            RejectionReason.RATE_LIMITED,
            429,
            f"more than {trigger.rate_limit_per_minute} deliveries a minute; slow down",
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in trigger.content_types:
        raise Refusal(
            RejectionReason.UNSUPPORTED_MEDIA_TYPE,
            415,
            f"content type {content_type or '(none)'!r} is not accepted; send one of "
            + ", ".join(trigger.content_types),
        )
    limit = _limit(ctx, route)
    try:
        raw = await read_limited(request, limit)
    except ProblemError as exc:
        raise Refusal(RejectionReason.BODY_TOO_LARGE, 413, str(exc.detail)) from exc
    secret = ctx.webhook_secrets.get((route.flow.id, route.trigger_key))
    if secret is None:
        raise Refusal(
            RejectionReason.NO_SECRET,
            503,
            "this webhook has no secret configured on the server, so it accepts no deliveries",
        )
    now = ctx.engine.clock.now()
    headers = {name.lower(): value for name, value in request.headers.items()}
    signature = verify(trigger, secret, headers, raw, now)
    delivery = delivery_id(trigger, headers, signature)
    body = _parse(route, content_type, raw)
    dropped = [trigger.signature_header]
    result = await ctx.engine.trigger(
        route.flow.id,
        route.trigger_key,
        body,
        trigger_headers(request.headers, dropped),
        idempotency_key=f"webhook:{delivery}",
        origin=TriggerOrigin.http(request.headers),
    )
    if result.disabled or result.run_id is None:
        raise Refusal(RejectionReason.FLOW_DISABLED, 409, f"flow {route.flow.id!r} is disabled")
    if result.duplicate:
        raise Refusal(
            RejectionReason.REPLAYED,
            409,
            f"delivery {delivery!r} was already received (run {result.run_id}); it starts no "
            "second run",
        )
    await ctx.store.record_webhook_delivery(
        WebhookDelivery(route.flow.id, route.trigger_key, delivery, now, result.run_id)
    )
    return WebhookAccepted(run_id=result.run_id, delivery_id=delivery)


@router.post(
    "/{slug}",
    status_code=202,
    response_model=WebhookAccepted,
    responses=problem_responses(400, 401, 404, 409, 413, 415, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The delivery, JSON or a form, signed with HMAC-SHA256.",
            "content": {
                "application/json": {"schema": {}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
            },
        }
    },
)
async def deliver(
    request: Request,
    response: Response,
    slug: Annotated[str, Path(max_length=200)],
) -> WebhookAccepted:
    """Receives a webhook delivery: checks the signature, the timestamp and the delivery id,
    then starts a run with the body as ``triggerBody()``. Refusals are logged with a reason."""
    ctx = context_of(request)
    try:
        accepted = await _accept(ctx, request, slug)
    except Refusal as refusal:
        route = webhook_routes(ctx.engine.flows).get(slug)
        await ctx.store.record_webhook_rejection(
            WebhookRejection(
                slug=slug[:200],
                reason=refusal.reason,
                detail=refusal.detail,
                at=ctx.engine.clock.now(),
                flow_id=route.flow.id if route else None,
                trigger_key=route.trigger_key if route else None,
            )
        )
        log.info("webhook %s refused: %s (%s)", slug, refusal.reason, refusal.detail)
        raise ProblemError(
            refusal.status,
            refusal.detail,
            kind=_KINDS.get(refusal.reason, "webhook-refused"),
        ) from None
    response.headers["Location"] = f"/api/runs/{accepted.run_id}"
    return accepted
