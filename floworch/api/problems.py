"""Problem documents (RFC 9457): every error the API returns, as one JSON shape.

``{"type", "title", "status", "detail"}`` (plus ``errors`` for invalid input), with media type
``application/problem+json``. Routes raise :class:`ProblemError`; the handlers installed by
:func:`install_problem_handlers` turn floworch's own errors, FastAPI's validation errors,
Starlette's 404/405 and anything unexpected into problems. An unexpected exception answers 500
with no stack trace and is logged once, with its traceback, on the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from floworch.errors import (
    FlowError,
    FlowNotFoundError,
    FlowValidationError,
    InvalidInputError,
    InvalidOperationError,
    RunNotFoundError,
    StepNotFoundError,
    StorageError,
    TransportError,
    TriggerNotFoundError,
)

log = logging.getLogger("floworch.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:floworch:problem:"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    429: "rate-limited",
    500: "internal",
    503: "unavailable",
}


class ProblemItem(BaseModel):
    """One invalid input: where (``body.cron``, ``query.limit``) and what is wrong."""

    loc: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What is wrong with this request, and what to do.")
    errors: list[ProblemItem] | None = Field(default=None, description="Invalid inputs.")


class ProblemError(HTTPException):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: list[ProblemItem] | None = None,
    ) -> None:
        super().__init__(status, detail, dict(headers) if headers else None)
        self.kind = kind or _SLUGS.get(status, "error")
        self.title = title or _TITLES.get(status, "Error")
        self.errors = errors


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    errors: list[ProblemItem] | None = None,
) -> Response:
    """A problem document response."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (kind or _SLUGS.get(status, "error")),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [e.model_dump() for e in errors]
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries declaring problem documents for these statuses."""
    return {
        status: {
            "model": Problem,
            "description": _TITLES.get(status, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def _flow_error_status(exc: FlowError) -> tuple[int, str]:
    if isinstance(exc, FlowNotFoundError | RunNotFoundError | StepNotFoundError):
        return 404, "not-found"
    if isinstance(exc, TriggerNotFoundError):
        return 404, "trigger-not-found"
    if isinstance(exc, InvalidOperationError):
        return 409, "invalid-operation"
    if isinstance(exc, FlowValidationError):
        return 422, "invalid-input"
    if isinstance(exc, InvalidInputError):
        return 400, "invalid-value"
    if isinstance(exc, StorageError):
        return 503, "storage-unavailable"
    if isinstance(exc, TransportError):
        return 503, "transport-unavailable"
    return 400, "bad-request"


def _loc(parts: Any) -> str:
    return ".".join(str(p) for p in parts) if isinstance(parts, list | tuple) else str(parts)


def install_problem_handlers(app: FastAPI) -> None:
    """Makes every error of ``app`` a problem document."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, ProblemError):
            return problem_response(
                exc.status_code,
                str(exc.detail),
                kind=exc.kind,
                title=exc.title,
                headers=exc.headers,
                errors=exc.errors,
            )
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = (
                f"no such endpoint: {request.method} {request.url.path} (see /api/openapi.json)"
            )
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(exc.status_code, detail, headers=exc.headers)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        items = [
            ProblemItem(loc=_loc(err.get("loc", ())), message=str(err.get("msg", "invalid")))
            for err in exc.errors()
        ]
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            return problem_response(
                400, "the request body is not valid JSON", kind="invalid-json", errors=items
            )
        summary = "; ".join(f"{i.loc}: {i.message}" for i in items[:5])
        return problem_response(422, f"invalid request: {summary}", errors=items)

    async def flow_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FlowError)
        status, kind = _flow_error_status(exc)
        if status == 503:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return problem_response(
                503, f"{exc}; try again shortly", kind=kind, headers={"Retry-After": "5"}
            )
        errors = None
        if isinstance(exc, FlowValidationError):
            errors = [ProblemItem(loc=i.path, message=i.message) for i in exc.issues]
            detail = "; ".join(str(i) for i in exc.issues) or str(exc)
        else:
            detail = str(exc)
        return problem_response(status, detail, kind=kind, errors=errors)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(FlowError, flow_error)


class UnexpectedErrorMiddleware:
    """Answers an unexpected exception with a 500 problem (no stack trace in the response) and
    logs it once with its traceback. It sits inside Starlette's error middleware, so nothing is
    re-raised to the server (which would log it a second time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                return  # the response is under way; the connection is closed by the server
            response = problem_response(
                500,
                "an unexpected error happened on the server; it was logged there",
            )
            await response(scope, receive, send)
