"""The HTTP function, invoked with real ``func.HttpRequest`` objects through the ASGI adapter:
starting runs, signals, webhooks and the refusals (bad JSON, wrong signature, oversized body),
App Service authentication, and a clear 503 when the database is unreachable."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from floworch.api.webhooks import sign
from floworch.emulator import ServiceBusEmulator
from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.functions import build_app
from floworch.hosting.functions.local import LocalFunctionsHost
from floworch.model import load_manifest
from floworch.model.statuses import RunStatus
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from tests.integration.servicebus.conftest import declare_entities

from .conftest import app_settings, fast_options, functions_host

pytestmark = [pytest.mark.emulator]

SECRET = "s3cret-for-tests"
JSON = {"content-type": "application/json"}
FLOW = load_manifest(
    {
        "id": "inbox",
        "version": "1",
        "triggers": {
            "manual": {"type": "Manual"},
            "hook": {"type": "Webhook", "slug": "inbox", "secretFrom": {"env": "INBOX_SECRET"}},
        },
        "steps": {
            "note": {"type": "Note", "inputs": "@triggerBody()"},
            "wait": {
                "type": "WaitForSignal",
                "inputs": {"signalName": "go"},
                "runAfter": {"note": ["Succeeded"]},
            },
        },
    }
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'floworch.db'}")
    yield opened
    await opened.close()


def _handlers() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Note")
    async def note(ctx: StepContext, inputs: Any) -> Any:
        return inputs

    return reg


@pytest.fixture
async def host(emulator: ServiceBusEmulator, store: Store) -> AsyncIterator[LocalFunctionsHost]:
    async with functions_host(
        emulator, [FLOW], _handlers(), store, environ={"INBOX_SECRET": SECRET}
    ) as running:
        yield running


def _body(response: Any) -> Any:
    return json.loads(response.get_body())


async def test_a_run_is_started_and_signalled_over_http(host: LocalFunctionsHost) -> None:
    started = await host.http("POST", "/api/flows/inbox/runs", body={"n": 1}, headers=JSON)
    assert started.status_code == 202, started.get_body()
    run_id = _body(started)["runId"]
    engine = host.app.runtime.engine

    async def waiting() -> bool:
        run = await engine.get_run(run_id)
        step = run.steps.get("wait") if run else None
        return step is not None and step.status == "Waiting"

    from floworch.testing.consumer_contract import eventually

    await eventually(waiting, 30, "the signal step to wait")
    signalled = await host.http(
        "POST", f"/api/runs/{run_id}/signals/go", body={"ok": True}, headers=JSON
    )
    assert signalled.status_code in (200, 202), signalled.get_body()
    run = await engine.wait_for_run(run_id, timeout=30)
    assert run.status == RunStatus.SUCCEEDED
    assert run.steps["note"].output == {"n": 1}


async def test_bad_json_is_a_400_problem_and_starts_nothing(host: LocalFunctionsHost) -> None:
    for body in (b"{not json", b'{"n": NaN}'):
        answer = await host.http("POST", "/api/flows/inbox/runs", body=body, headers=JSON)
        assert answer.status_code == 400, answer.get_body()
        assert answer.mimetype == "application/problem+json"
    listed = _body(await host.http("GET", "/api/runs"))
    assert listed["total"] == 0


async def test_an_oversized_body_is_refused_with_413(host: LocalFunctionsHost) -> None:
    big = b'{"pad": "' + b"x" * (1024 * 1024 + 1) + b'"}'
    answer = await host.http("POST", "/api/flows/inbox/runs", body=big, headers=JSON)
    assert answer.status_code == 413, answer.get_body()[:200]


async def test_a_webhook_needs_its_signature(host: LocalFunctionsHost) -> None:
    body = b'{"order": 7}'
    now = str(int(time.time()))
    wrong = {**JSON, "X-Floworch-Timestamp": now, "X-Floworch-Signature": "sha256=" + "0" * 64}
    refused = await host.http("POST", "/api/webhooks/inbox", body=body, headers=wrong)
    assert refused.status_code == 401, refused.get_body()
    right = {
        **JSON,
        "X-Floworch-Timestamp": now,
        "X-Floworch-Signature": sign(SECRET, body, timestamp=int(now)),
        "X-Floworch-Delivery": "d-1",
    }
    accepted = await host.http("POST", "/api/webhooks/inbox", body=body, headers=right)
    assert accepted.status_code == 202, accepted.get_body()
    run = await host.app.runtime.engine.get_run(_body(accepted)["runId"])
    assert run is not None and run.trigger_key == "hook"
    replayed = await host.http("POST", "/api/webhooks/inbox", body=body, headers=right)
    assert replayed.status_code == 409


async def test_health_and_the_dashboard_are_served_at_the_root(host: LocalFunctionsHost) -> None:
    assert (await host.http("GET", "/healthz")).status_code == 200
    assert (await host.http("GET", "/readyz")).status_code == 200
    page = await host.http("GET", "/")
    assert page.status_code == 200 and b"<html" in page.get_body().lower()


async def test_app_service_auth_refuses_a_caller_without_a_principal(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    sb = declare_entities(emulator, [FLOW.id])
    settings = app_settings(emulator, sb)
    from dataclasses import replace

    app = build_app(
        [FLOW],
        settings=replace(settings, api_auth="appservice"),
        handlers=_handlers(),
        options=fast_options(sb),
        store=store,
    )
    host = LocalFunctionsHost(app, connection_string=emulator.connection_string, timer_every=None)
    try:
        answer = await host.http("POST", "/api/flows/inbox/runs", body={}, headers=JSON)
        assert answer.status_code == 401, answer.get_body()
    finally:
        await host.stop()
        await app.runtime.close()


async def test_an_unreachable_database_is_a_503_saying_so(emulator: ServiceBusEmulator) -> None:
    sb = declare_entities(emulator, [FLOW.id])
    from dataclasses import replace

    settings = replace(app_settings(emulator, sb), db_url="postgresql://nobody@127.0.0.1:9/none")
    app = build_app([FLOW], settings=settings, handlers=_handlers(), options=fast_options(sb))
    host = LocalFunctionsHost(app, connection_string=emulator.connection_string, timer_every=None)
    try:
        answer = await host.http("GET", "/api/flows")
    finally:
        await host.stop()
    assert answer.status_code == 503
    problem = _body(answer)
    assert "127.0.0.1" in problem["detail"] and "\n" not in problem["detail"]
