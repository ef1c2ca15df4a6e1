"""The order example run end to end only through the Function App's entry points: the HTTP
function starts it and delivers its approval, the Service Bus trigger functions run every step
from messages received from the emulator (real ``azure.functions`` message objects), on SQLite
and PostgreSQL, with each settlement mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from floworch.cli.loading import load_flows
from floworch.emulator import ServiceBusEmulator
from floworch.engine.handlers import default_registry
from floworch.hosting.functions import Settlement
from floworch.model.statuses import RunStatus
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.testing.consumer_contract import eventually
from tests.integration.storage.conftest import empty_tables

from .conftest import ORDER_FLOW, functions_host

pytestmark = [pytest.mark.emulator, pytest.mark.slow]


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path, settlement: Settlement) -> str:
    if settlement is Settlement.AUTO:
        return f"sqlite:///{tmp_path / 'floworch.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await open_store(db_url)
    if not db_url.startswith("sqlite"):
        await empty_tables(opened)  # type: ignore[arg-type]
    yield opened
    await opened.close()


def _json(response: Any) -> Any:
    return json.loads(response.get_body())


# Each settlement mode once, each on one database (test-time budget): auto-complete on SQLite,
# the SDK-type binding on PostgreSQL.
@pytest.mark.parametrize(
    "settlement",
    [
        pytest.param(Settlement.AUTO, id="sqlite-auto"),
        pytest.param(Settlement.ACTIONS, id="postgresql-actions", marks=pytest.mark.postgres),
    ],
)
async def test_the_order_example_runs_through_the_function_entry_points(
    emulator: ServiceBusEmulator, store: Store, settlement: Settlement
) -> None:
    flows = list(load_flows([str(ORDER_FLOW)]).manifests)
    async with functions_host(
        emulator, flows, default_registry, store, settlement=settlement
    ) as host:
        started = await host.http(
            "POST",
            "/api/flows/order-fulfilment/runs",
            body={"customerId": "c-7"},
            headers={"content-type": "application/json"},
        )
        assert started.status_code in (200, 201, 202), started.get_body()
        run_id = _json(started)["runId"]
        engine = host.app.runtime.engine

        async def approval_waits() -> bool:
            run = await engine.get_run(run_id)
            step = run.steps.get("approve") if run is not None else None
            return step is not None and step.status == "Waiting"

        await eventually(approval_waits, 60, "the approval step to wait")
        signalled = await host.http(
            "POST",
            f"/api/runs/{run_id}/signals/approval",
            body={"approved": True, "by": "ops"},
            headers={"content-type": "application/json"},
        )
        assert signalled.status_code in (200, 202), signalled.get_body()
        run = await engine.wait_for_run(run_id, timeout=60)
        shown = _json(await host.http("GET", f"/api/runs/{run_id}"))
    assert run.status == RunStatus.SUCCEEDED, run.to_dict()
    assert shown["status"] == "Succeeded"
    assert run.steps["ship"].status == "Succeeded"
    step_functions = {i.function for i in host.invocations}
    assert step_functions == {"steps-flow-order-fulfilment"}
    assert host.stats.failures == 0 and host.stats.dead_lettered == 0
    assert host.stats.completed == len(host.invocations)
