"""Reading request bodies: a size limit (413) and strict JSON (no NaN or Infinity: 400).

:class:`StrictRoute` is the route class of every router, so FastAPI's own body parsing goes
through :class:`StrictRequest` too. Routes that take a raw body (a trigger body, a webhook) call
:func:`read_limited` and :func:`parse_json` themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from floworch.api.problems import ProblemError

MAX_EVENT_ID = 2**53 - 1
"""The largest event id a query accepts (exact in JavaScript; fits every database's integer)."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (floworch refuses NaN and Infinity)")


def parse_json(raw: bytes, *, what: str = "the request body") -> Any:
    """Parses JSON strictly; an empty body is ``None``.

    Raises:
        ProblemError: 400 for invalid JSON, NaN, Infinity or invalid UTF-8.
    """
    if not raw.strip():
        return None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise ProblemError(400, f"{what} is not UTF-8", kind="invalid-json") from exc
    except RecursionError as exc:
        raise ProblemError(400, f"{what} is nested too deeply", kind="invalid-json") from exc
    except ValueError as exc:
        raise ProblemError(400, f"{what} is not valid JSON: {exc}", kind="invalid-json") from exc


def too_large(limit: int) -> ProblemError:
    """The 413 problem for a body over ``limit`` bytes."""
    return ProblemError(
        413,
        f"the request body is larger than the limit of {limit} bytes",
        kind="body-too-large",
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing it (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    cached = getattr(request, "_body", None)
    if isinstance(cached, bytes):
        if len(cached) > limit:
            raise too_large(limit)
        return cached
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body
    return body


class StrictRequest(Request):
    """A request whose ``body()`` is size-limited and whose ``json()`` is strict."""

    body_limit: int = 1024 * 1024

    async def body(self) -> bytes:
        return await read_limited(self, self.body_limit)

    async def json(self) -> Any:
        return parse_json(await self.body())


class StrictRoute(APIRoute):
    """Routes whose handlers see :class:`StrictRequest` (limit from the app's options)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            from floworch.api.context import context_of

            strict = StrictRequest(request.scope, request.receive)
            strict.body_limit = context_of(request).options.max_body_bytes
            return await handler(strict)

        return strict_handler
