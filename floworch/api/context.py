"""What the API is built from: the engine, its store, the auth setting, the readiness probe,
the webhook secrets and options. Hosts build an :class:`ApiContext`; routes read it from the
request (``app.state``), so nothing in ``floworch.api`` reads the environment."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from starlette.requests import Request

from floworch.api.auth import AuthConfig
from floworch.api.ratelimit import RateLimiter
from floworch.engine.engine import Engine
from floworch.storage.api_port import ApiStore

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Readiness:
    """The answer of a readiness probe: ready or not, why not, and a JSON-able report."""

    ready: bool
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


ReadinessProbe = Callable[[], Awaitable[Readiness]]
"""Called by ``/readyz`` and ``/status``."""

DeadLetterCount = Callable[[], Awaitable[int | None]]
"""How many step messages the host's transport has dead-lettered (None: it cannot tell)."""


@dataclass(frozen=True, kw_only=True)
class ApiOptions:
    """Options of the HTTP API.

    Attributes:
        max_body_bytes: the largest request body (trigger bodies, signal payloads, webhooks
            without their own ``maxBodyBytes``); larger ones get 413.
        stream_poll: how often a server-sent event stream looks for new events.
        stream_heartbeat: how often an idle stream sends a comment line (keeps proxies open).
        stream_max: how long one stream stays open before the server ends it (the browser's
            EventSource reconnects with ``Last-Event-ID``).
        bulk_cancel_limit: the most runs one bulk cancel may cancel.
        max_stats_window: the longest window ``/api/stats`` accepts.
        title: the OpenAPI title.
        dashboard: serve the web dashboard at ``/``.
        schedule_preview: how many upcoming fire times a schedule lists.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    stream_poll: timedelta = timedelta(milliseconds=500)
    stream_heartbeat: timedelta = timedelta(seconds=15)
    stream_max: timedelta = timedelta(minutes=30)
    bulk_cancel_limit: int = 1000
    max_stats_window: timedelta = timedelta(days=31)
    title: str = "floworch"
    dashboard: bool = True
    schedule_preview: int = 5


WebhookSecrets = Mapping[tuple[str, str], str]
"""HMAC secrets by (flow id, trigger key), resolved by the host at start-up."""


@dataclass(frozen=True, kw_only=True)
class ApiContext:
    """Everything the routes use."""

    engine: Engine
    store: ApiStore
    auth: AuthConfig
    readiness: ReadinessProbe
    options: ApiOptions
    webhook_secrets: WebhookSecrets
    limiter: RateLimiter
    dead_letters: DeadLetterCount | None = None


def context_of(request: Request) -> ApiContext:
    """The API context of the app serving ``request``."""
    ctx = request.app.state.floworch
    assert isinstance(ctx, ApiContext)
    return ctx
