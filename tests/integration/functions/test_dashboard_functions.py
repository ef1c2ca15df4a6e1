"""The dashboard's anonymous functions, invoked with real ``func.HttpRequest`` objects through
the generated functions: they serve the page (saying the API wants a function key) and its
files without a database, while the keyed ``http`` function no longer serves the dashboard.
No Service Bus is needed: nothing here sends a message."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from floworch.hosting.functions import FunctionsSettings, build_app
from floworch.runtime.servicebus.config import ServiceBusConnection
from floworch.storage.factory import open_store
from floworch.storage.port import Store

ROOT = Path(__file__).resolve().parents[3]
NOWHERE = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=x;SharedAccessKey=eA=="


class _Context:
    def __init__(self, name: str) -> None:
        self.function_name = name
        self.invocation_id = "test"
        self.trace_context = None
        self.retry_context = None
        self.function_directory = str(ROOT)


def _settings() -> FunctionsSettings:
    return FunctionsSettings(
        flows_path=ROOT / "flows",
        db_url=None,
        connection=ServiceBusConnection(connection_string=NOWHERE),
        steps_topic="flow-steps",
        api_auth="none",
        environ={},
    )


def _functions(store: Store | None = None) -> dict[str, Any]:
    app = build_app([], settings=_settings(), handlers=None, store=store)
    return {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}


async def _call(functions: dict[str, Any], function: str, path: str, **route: str) -> Any:
    request = func.HttpRequest("GET", f"http://localhost{path}", route_params=route, body=b"")
    return await functions[function](req=request, context=_Context(function))


async def test_the_page_and_its_files_need_neither_a_key_nor_a_database() -> None:
    functions = _functions()  # no FLOWORCH_DB_URL: the API answers 503
    page = await _call(functions, "dashboard", "/")
    assert page.status_code == 200 and page.mimetype.startswith("text/html")
    body = page.get_body().decode()
    assert '<meta name="floworch-auth" content="function-key">' in body
    version = re.search(r'src="assets/([0-9a-f]+)/app\.js"', body)
    assert version is not None
    script = await _call(
        functions,
        "dashboard-assets",
        f"/assets/{version[1]}/api.js",
        version=version[1],
        name="api.js",
    )
    assert script.status_code == 200 and script.mimetype.startswith("text/javascript")
    assert b"x-functions-key" in script.get_body()
    assert "immutable" in script.headers["Cache-Control"]
    missing = await _call(functions, "dashboard-assets", "/assets/x/nope.js", version="x")
    assert missing.status_code == 404
    api = await _call(functions, "http", "/api/runs", route="api/runs")
    assert api.status_code == 503


async def test_the_dashboard_functions_serve_no_api_route() -> None:
    functions = _functions()
    for path in ("/api/runs", "/status", "/healthz", "/assets/x/index.html"):
        answer = await _call(functions, "dashboard-assets", path)
        assert answer.status_code == 404, path


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    opened = await open_store("memory://")
    yield opened
    await opened.close()


async def test_the_keyed_http_function_no_longer_serves_the_dashboard(store: Store) -> None:
    functions = _functions(store)
    assert (await _call(functions, "http", "/api/flows", route="api/flows")).status_code == 200
    assert (await _call(functions, "http", "/", route="")).status_code == 404
