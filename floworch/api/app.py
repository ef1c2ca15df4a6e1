"""The application factory: one ASGI app for the worker, ``floworch serve`` and the Function App.

Routes live under ``/api`` (OpenAPI at ``/api/openapi.json``, interactive docs at
``/api/docs``); ``/healthz``, ``/readyz`` and ``/status`` sit at the root; the dashboard is at
``/`` (its files under ``/assets/``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from fastapi import FastAPI

from floworch.api import (
    routes_flows,
    routes_health,
    routes_runs,
    routes_schedules,
    routes_stats,
    routes_stream,
    routes_webhooks,
)
from floworch.api.auth import AuthConfig
from floworch.api.context import (
    ApiContext,
    ApiOptions,
    DeadLetterCount,
    Readiness,
    ReadinessProbe,
)
from floworch.api.problems import UnexpectedErrorMiddleware, install_problem_handlers
from floworch.api.ratelimit import RateLimiter
from floworch.api.webhooks import webhook_routes
from floworch.engine.engine import Engine
from floworch.storage.api_port import ApiStore


def store_probe(store: ApiStore) -> ReadinessProbe:
    """A readiness probe that is ready while the store answers."""

    async def probe() -> Readiness:
        try:
            await store.list_flows()
        except Exception as exc:
            return Readiness(
                False, f"the database does not answer: {exc}", {"store": type(exc).__name__}
            )
        return Readiness(True, None, {"store": "ok"})

    return probe


def create_app(
    engine: Engine,
    *,
    auth: AuthConfig,
    readiness: ReadinessProbe | None = None,
    webhook_secrets: Mapping[tuple[str, str], str] | None = None,
    options: ApiOptions | None = None,
    dead_letters: DeadLetterCount | None = None,
) -> FastAPI:
    """Builds the HTTP API over an engine.

    Args:
        engine: the engine whose flows, store and dispatcher the API uses (control operations
            send their step messages through its dispatcher at once).
        auth: who may call (``AuthConfig.none()`` only on loopback; hosts decide).
        readiness: ``/readyz``'s probe (default: the store answers).
        webhook_secrets: HMAC secrets by (flow id, trigger key), resolved by the host.
        options: body limit, stream timings, bulk-cancel limit, whether to serve the
            dashboard at ``/``.
        dead_letters: how the host counts dead-lettered step messages (shown by
            ``/api/stats`` and the dashboard; None: unknown).

    Raises:
        TypeError: the engine's store does not implement the control plane's methods.
        ValueError: two webhook triggers share a slug.
    """
    store = engine.store
    if not isinstance(store, ApiStore):
        raise TypeError(
            f"{type(store).__name__} does not implement floworch.storage.api_port.ApiStore"
        )
    webhook_routes(engine.flows)  # refuses duplicate slugs now rather than per request
    opts = options or ApiOptions()
    app = FastAPI(
        title=opts.title,
        version="1",
        description="Trigger runs, deliver signals, retry and cancel; webhooks; stats.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.floworch = ApiContext(
        engine=engine,
        store=store,
        auth=auth,
        readiness=readiness or store_probe(store),
        options=opts,
        webhook_secrets=dict(webhook_secrets or {}),
        limiter=RateLimiter(time.monotonic),
        dead_letters=dead_letters,
    )
    install_problem_handlers(app)
    app.add_middleware(UnexpectedErrorMiddleware)
    for module in (
        routes_health,
        routes_flows,
        routes_runs,
        routes_schedules,
        routes_webhooks,
        routes_stats,
        routes_stream,
    ):
        app.include_router(module.router)
    if opts.dashboard:
        from floworch.dashboard import mount_dashboard

        mount_dashboard(app)
    return app
