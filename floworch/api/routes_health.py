"""``/healthz`` (liveness), ``/readyz`` (readiness: 503 with a reason) and ``/status``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from floworch.api.auth import Caller, reader
from floworch.api.context import Readiness, context_of
from floworch.api.models import Liveness, ReadinessModel
from floworch.api.problems import problem_responses

router = APIRouter(tags=["health"])


def _report(readiness: Readiness) -> dict[str, Any]:
    return {
        **dict(readiness.details),
        "status": "ready" if readiness.ready else "not ready",
        "reason": readiness.reason,
    }


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """200 while the process serves requests."""
    return Liveness(status="alive")


@router.get(
    "/readyz",
    response_model=ReadinessModel,
    responses={503: {"model": ReadinessModel, "description": "Not ready, with the reason."}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when this host can do its work, else 503 with ``reason`` naming what is not ready."""
    readiness = await context_of(request).readiness()
    return JSONResponse(_report(readiness), status_code=200 if readiness.ready else 503)


@router.get("/status", response_model=ReadinessModel, responses=problem_responses(401, 403))
async def status(request: Request, _: Annotated[Caller, Depends(reader)]) -> JSONResponse:
    """The readiness report, always with 200 (for humans and dashboards)."""
    return JSONResponse(_report(await context_of(request).readiness()))


@router.get("/api/status", response_model=ReadinessModel, responses=problem_responses(401, 403))
async def api_status(request: Request, _: Annotated[Caller, Depends(reader)]) -> JSONResponse:
    """The same report as ``/status``, under ``/api``."""
    return JSONResponse(_report(await context_of(request).readiness()))
