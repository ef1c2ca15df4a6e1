"""The API under test: the real app over an embedded host (in-process runtime) on the memory
store, SQLite and PostgreSQL, driven through httpx's ASGI transport.

PostgreSQL: a fresh schema per test session on 127.0.0.1:5432 (skips locally when absent,
fails when CI=true), emptied before each test.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, delete
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from floworch.api import ApiOptions, AuthConfig, create_app
from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings
from floworch.model import load_manifest
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.storage.sql.schema import metadata
from floworch.storage.sql.store import SqlStore

PG_SERVER_URL = os.environ.get(
    "FLOWORCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SECRET = "orders-webhook-secret-for-tests"

ORDERS: dict[str, Any] = {
    "id": "orders",
    "version": "1",
    "triggers": {
        "manual": {"type": "Manual"},
        "nightly": {"type": "Cron", "cron": "0 2 * * *", "body": {"nightly": True}},
        "hook": {"type": "Webhook", "slug": "orders", "secretFrom": {"env": "ORDERS_SECRET"}},
    },
    "steps": {
        "check": {"type": "Echo", "inputs": {"order": "@triggerBody()"}},
        "approve": {
            "type": "WaitForSignal",
            "inputs": {"signalName": "approval"},
            "runAfter": {"check": ["Succeeded"]},
        },
        "ship": {
            "type": "Echo",
            "inputs": {"by": "@steps('approve').output.by"},
            "runAfter": {
                "approve": {
                    "statuses": ["Succeeded"],
                    "when": "@steps('approve').output.approved == true",
                }
            },
        },
    },
}
FLAKY: dict[str, Any] = {
    "id": "flaky",
    "version": "1",
    "steps": {
        "work": {"type": "Flaky"},
        "after": {"type": "Echo", "inputs": {"x": 1}, "runAfter": {"work": ["Succeeded"]}},
    },
}
OFF: dict[str, Any] = {
    "id": "off",
    "version": "1",
    "enabled": False,
    "steps": {"a": {"type": "Echo"}},
}
MANIFESTS = [ORDERS, FLAKY, OFF]


@dataclass
class Switches:
    """Test-controlled behaviour of the handlers."""

    fail: bool = True
    calls: list[str] = field(default_factory=list)


def handlers(switches: Switches) -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler("Echo")
    async def echo(inputs: Any) -> Any:
        switches.calls.append("Echo")
        return inputs

    @registry.handler("Flaky")
    async def flaky(inputs: Any) -> Any:
        switches.calls.append("Flaky")
        if switches.fail:
            from floworch.errors import StepError

            raise StepError("flaky is failing on purpose", retryable=False)
        return "ok"

    return registry


@dataclass
class Api:
    """A running app: its client, its embedded host and handler switches."""

    client: httpx.AsyncClient
    host: EmbeddedHost
    switches: Switches
    app: FastAPI

    async def wait_status(self, run_id: str, *statuses: str, timeout: float = 30) -> Any:
        """Polls ``GET /api/runs/{id}`` until the run is in one of ``statuses``."""
        return await poll(
            lambda: self.client.get(f"/api/runs/{run_id}"),
            lambda r: r.status_code == 200 and r.json()["status"] in statuses,
            timeout,
        )

    async def wait_step(self, run_id: str, step: str, status: str, timeout: float = 30) -> Any:
        def ok(response: httpx.Response) -> bool:
            steps = {s["stepKey"]: s for s in response.json().get("steps", [])}
            return step in steps and steps[step]["status"] == status

        return await poll(lambda: self.client.get(f"/api/runs/{run_id}"), ok, timeout)


async def poll(
    fetch: Callable[[], Awaitable[httpx.Response]],
    done: Callable[[httpx.Response], bool],
    timeout: float = 30,
) -> Any:
    """Fetches until ``done`` holds (state, not sleeps); returns the JSON of the last answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response = await fetch()
        if done(response):
            return response.json()
        if loop.time() > deadline:
            raise AssertionError(f"still not there after {timeout}s: {response.text[:500]}")
        await asyncio.sleep(0.05)


def _pg_reason() -> str | None:
    engine = create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except Exception as exc:
        return f"PostgreSQL is not reachable: {exc}"
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_api_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this session's API tests."""
    reason = _pg_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)
    name = f"floworch_api_{uuid.uuid4().hex[:10]}"
    engine = create_engine(PG_SERVER_URL)
    with engine.begin() as conn:
        conn.execute(CreateSchema(name))
    url = make_url(PG_SERVER_URL).update_query_dict({"options": f"-csearch_path={name}"})
    yield url.render_as_string(hide_password=False)
    with engine.begin() as conn:
        conn.execute(DropSchema(name, cascade=True))
    engine.dispose()


async def _empty(store: SqlStore) -> None:
    with store.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store of each kind."""
    if request.param == "memory":
        found = await open_store("memory://")
    elif request.param == "sqlite":
        found = await open_store(f"sqlite:///{tmp_path / 'api.db'}")
    else:
        found = await open_store(request.getfixturevalue("pg_api_url"))
        assert isinstance(found, SqlStore)
        await _empty(found)
    yield found
    await found.close()


async def start_api(
    store: Store,
    *,
    auth: AuthConfig | None = None,
    options: ApiOptions | None = None,
    secrets: dict[tuple[str, str], str] | None = None,
    manifests: list[dict[str, Any]] | None = None,
) -> Api:
    switches = Switches()
    host = EmbeddedHost(
        store=store,
        flows=[load_manifest(m) for m in (manifests or MANIFESTS)],
        handlers=handlers(switches),
        settings=EmbeddedSettings(tick=timedelta(milliseconds=100), cron=False),
    )
    await host.start()
    app = create_app(
        host.engine,
        auth=auth or AuthConfig.none(),
        options=options,
        webhook_secrets={("orders", "hook"): SECRET} if secrets is None else secrets,
    )
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"X-Floworch-Request": "1"},
    )
    return Api(client, host, switches, app)


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Api]:
    """The app with auth off (a loopback host) over each store."""
    running = await start_api(store)
    yield running
    await running.client.aclose()
    await running.host.stop()


@pytest.fixture
async def memory_api() -> AsyncIterator[Api]:
    """The app over the memory store only (for tests whose subject is not storage)."""
    store = await open_store("memory://")
    running = await start_api(store)
    yield running
    await running.client.aclose()
    await running.host.stop()
