"""A Function App's HTTP functions on 127.0.0.1 behind a stand-in for the Functions host's key
check, for the browser tests.

This is not the Functions host. :class:`FunctionKeyGate` does the one thing of the host's that
the dashboard depends on: it picks the function a request goes to as the local host does (the
first, by function name, whose methods and route match, :meth:`LocalFunctionsHost.http_function`),
and when that function's indexed auth level is not ``ANONYMOUS`` it refuses the request with a
bare 401 unless ``x-functions-key`` (or ``?code=``) holds the key. Everything else goes through
the generated functions as ``func.HttpRequest`` objects (``HttpFront``). The engine's step
messages go nowhere: runs are created and listed, never executed.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import Dispatcher
from floworch.hosting.functions import FunctionsSettings, build_app
from floworch.hosting.functions.local import LocalFunctionsHost
from floworch.hosting.functions.serve_local import HttpFront
from floworch.hosting.http import HttpServer
from floworch.model import FlowManifest
from floworch.runtime.servicebus.config import ServiceBusConnection
from floworch.storage.factory import open_store
from tests.acceptance.conftest import ROOT

NOWHERE = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=x;SharedAccessKey=eA=="


class _Nowhere:
    """A dispatcher that drops step messages (this app has no Service Bus)."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        return None

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        return None


class FunctionKeyGate:
    """ASGI: refuses what a function with auth level ``FUNCTION`` would get without its key."""

    def __init__(self, host: LocalFunctionsHost, key: str) -> None:
        self._host = host
        self._front = HttpFront(host)
        self._key = key
        self.refused: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        found = self._host.http_function(scope["method"], scope["path"])
        if found is not None and self._host.auth_level(found[0]) != "ANONYMOUS":
            headers = {k.decode("latin-1").lower(): v.decode() for k, v in scope["headers"]}
            query = parse_qs(scope.get("query_string", b"").decode())
            if self._key not in (headers.get("x-functions-key"), *query.get("code", [])):
                self.refused.append(scope["path"])
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self._front(scope, receive, send)


class GatedFunctionApp:
    """The Function App for ``flows`` over an in-memory store, behind :class:`FunctionKeyGate`
    on a free port, in its own event loop thread (the tests drive a sync browser)."""

    def __init__(self, flows: list[FlowManifest], handlers: HandlerRegistry, key: str) -> None:
        self._flows = flows
        self._handlers = handlers
        self._key = key
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.url, self.gate = self._run(self._start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    async def _start(self) -> tuple[str, FunctionKeyGate]:
        self._store = await open_store("memory://")
        settings = FunctionsSettings(
            flows_path=ROOT / "flows",
            db_url=None,
            connection=ServiceBusConnection(connection_string=NOWHERE),
            steps_topic="flow-steps",
            api_auth="none",
            environ={},
        )
        self._app = build_app(
            self._flows,
            settings=settings,
            handlers=self._handlers,
            store=self._store,
            dispatcher=_Nowhere,
        )
        self._host = LocalFunctionsHost(self._app, connection_string=NOWHERE, timer_every=None)
        gate = FunctionKeyGate(self._host, self._key)
        self._server = HttpServer(gate, host="127.0.0.1", port=0)
        await self._server.start()
        return self._server.url, gate

    def trigger(self, flow: str, body: Any) -> str:
        """Starts a run through the keyed ``http`` function (on this side of the gate)."""

        async def start() -> str:
            answer = await self._host.http(
                "POST",
                f"/api/flows/{flow}/runs",
                body=body,
                headers={"content-type": "application/json"},
            )
            assert answer.status_code == 202, answer.get_body()
            return str(json.loads(answer.get_body())["runId"])

        result: str = self._run(start())
        return result

    def stop(self) -> None:
        async def stop() -> None:
            await self._server.stop()
            if self._app.startup_task_done:  # the ASGI lifespan the http function started
                # azure-functions leaves notify_shutdown unannotated
                await self._app.middleware.notify_shutdown()  # type: ignore[no-untyped-call]
            await self._host.stop()
            await self._app.runtime.close()
            await self._store.close()

        try:
            self._run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
