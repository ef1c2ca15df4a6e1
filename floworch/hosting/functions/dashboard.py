"""The dashboard's anonymous HTTP functions: its page at ``/`` and its files at ``/assets/...``.

A browser opening the dashboard cannot send a function key with the page's ES-module imports,
so these two functions have auth level ``anonymous``. They serve
:func:`floworch.dashboard.assets.dashboard_app`, which holds the shipped files and nothing else:
every other path, and every API request the page makes, goes to the ``http`` function and its
function key (the page sends the key the user enters as ``x-functions-key``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import azure.functions as func

from floworch.hosting.functions.plan import DASHBOARD_ROUTES

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send


class _LazyDashboard:
    """The dashboard app, built (its files read) on the first request, not at import."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            from floworch.dashboard.assets import DashboardAuth, dashboard_app

            self._app = dashboard_app(auth=DashboardAuth.FUNCTION_KEY)
        await self._app(scope, receive, send)


def register_dashboard(app: func.AsgiFunctionApp) -> None:
    """Adds the functions of :data:`~floworch.hosting.functions.plan.DASHBOARD_ROUTES` to
    ``app`` (``GET`` only, auth level anonymous)."""
    middleware = func.AsgiMiddleware(_LazyDashboard())  # type: ignore[no-untyped-call]
    for name, route in DASHBOARD_ROUTES.items():
        _register(app, middleware, name, route)


def _register(app: func.AsgiFunctionApp, middleware: Any, name: str, route: str) -> None:
    async def serve(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        response: func.HttpResponse = await middleware.handle_async(req, context)
        return response

    serve.__name__ = serve.__qualname__ = name.replace("-", "_")
    serve.__annotations__ = {
        "req": func.HttpRequest,
        "context": func.Context,
        "return": func.HttpResponse,
    }
    decorated = app.route(
        route=route, methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS
    )(serve)
    app.function_name(name=name)(decorated)
