"""The worker's HTTP health endpoint, for container hosts (Kubernetes, Container Apps).

``GET /healthz`` answers 200 while the process serves requests (liveness). ``GET /readyz``
answers 200 when every receiver is open and the store answers, 503 otherwise, with a JSON report
of why. ``GET /status`` always answers 200 with the same report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

StatusProbe = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


class HealthServer:
    """Serves the probes on ``host:port`` (port 0 picks a free one; see :attr:`port`)."""

    def __init__(self, probe: StatusProbe, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._probe = probe
        self._host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the health server is not started")
        return self._port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._live)
        app.router.add_get("/readyz", self._ready)
        app.router.add_get("/status", self._status)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        await site.start()
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1]) if sockets else self._requested_port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._port = None

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _ready(self, request: web.Request) -> web.Response:
        ready, report = await self._probe()
        return web.json_response(report, status=200 if ready else 503)

    async def _status(self, request: web.Request) -> web.Response:
        _, report = await self._probe()
        return web.json_response(report)
