"""``python -m floworch.hosting.functions.local``: a Function App run on this machine without
Core Tools, the way ``func start`` would run it.

It reads ``local.settings.json`` (its ``Values`` become environment variables, as with
``func start``; variables already set win), migrates the database at ``FLOWORCH_DB_URL`` (the
deployed app never does), imports ``function_app.py``, runs its Service Bus and timer functions
against the namespace of the ``ServiceBusConnection`` connection string (the emulator's) with
:class:`~floworch.hosting.functions.local.LocalFunctionsHost`, and serves its HTTP function on
``http://127.0.0.1:7071`` by turning each request into a ``func.HttpRequest``. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from floworch.hosting.app_settings import SERVICEBUS_CONNECTION


class LocalSetupError(Exception):
    """The local run cannot start (the message says what to fix)."""


def read_local_settings(path: Path) -> dict[str, str]:
    """The ``Values`` of a ``local.settings.json`` (empty when the file does not exist)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise LocalSetupError(f"{path}: not JSON ({exc})") from None
    values = data.get("Values", {}) if isinstance(data, dict) else {}
    if not isinstance(values, dict):
        raise LocalSetupError(f"{path}: 'Values' must be an object of settings")
    return {str(k): str(v) for k, v in values.items()}


def import_app(path: Path) -> Any:
    """Imports ``function_app.py`` from ``path`` and returns its ``app``."""
    if not path.is_file():
        raise LocalSetupError(f"no {path.name} at {path} (pass --app PATH)")
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("function_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if app is None or not hasattr(app, "runtime"):
        raise LocalSetupError(f"{path} defines no floworch Function App named 'app'")
    return app


class HttpFront:
    """An ASGI app that hands each request to the Function App's HTTP function."""

    def __init__(self, host: Any) -> None:
        self._host = host

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        params = dict(
            part.split("=", 1) if "=" in part else (part, "") for part in query.split("&") if part
        )
        response = await self._host.http(
            scope["method"],
            path + (f"?{query}" if query else ""),
            body=body,
            headers=headers,
            params=params,
        )
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.get_body()})


async def _serve(app: Any, connection: str, port: int, timer_every: float) -> None:
    from floworch.hosting.functions.local import LocalFunctionsHost
    from floworch.hosting.http import HttpServer

    async with LocalFunctionsHost(
        app, connection_string=connection, timer_every=timedelta(seconds=timer_every)
    ) as host:
        server = HttpServer(HttpFront(host), host="127.0.0.1", port=port)
        await server.start()
        print(f"floworch Function App running: {', '.join(sorted(host.functions))}", flush=True)
        print(f"HTTP function at {server.url}/ (Ctrl-C stops)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()
            await app.runtime.close()


async def _migrate(url: str) -> None:
    from floworch.storage.factory import open_store

    store = await open_store(url)
    await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m floworch.hosting.functions.local", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--app", default="function_app.py", help="the function_app.py to run")
    parser.add_argument("--settings", default="local.settings.json", help="local settings file")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (0: a free one)")
    parser.add_argument("--timer-every", type=float, default=10.0, help="seconds between passes")
    args = parser.parse_args(argv)
    from floworch.hosting.runner import run_main

    try:
        app_path = Path(args.app).resolve()
        values = read_local_settings(app_path.parent / args.settings)
        for name, value in values.items():
            os.environ.setdefault(name, value)
        connection = os.environ.get(SERVICEBUS_CONNECTION, "")
        if not connection.lower().startswith("endpoint="):
            raise LocalSetupError(
                f"set {SERVICEBUS_CONNECTION} to a connection string (the emulator's: run "
                "`floworch emulator --topology topology/servicebus.json --port 5673`)"
            )
        url = os.environ.get("FLOWORCH_DB_URL")
        if url:
            run_main(_migrate(url))
        app = import_app(app_path)
        run_main(_serve(app, connection, args.port, args.timer_every))
    except KeyboardInterrupt:
        return 0
    except (LocalSetupError, Exception) as exc:
        from floworch.errors import FlowError

        if not isinstance(exc, LocalSetupError | FlowError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
