"""The other trigger functions: a run started by a message on the triggers topic (and one that
names no deployed flow, dead-lettered from the catch-all with its reason), a function
that raises (the database cut off) leaves its message to be redelivered and the run finishes,
and the background timer runs in one app at a time by its SQL lease and seeds cron chains."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus.aio import ServiceBusClient
from sqlalchemy.engine import make_url

from floworch.emulator import ServiceBusEmulator
from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry
from floworch.model import load_manifest
from floworch.model.statuses import RunStatus
from floworch.runtime.servicebus.triggers import send_trigger
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.storage.records import RunQuery
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import to_async_url
from floworch.testing.consumer_contract import Gate, eventually
from floworch.testing.tcp_proxy import TcpProxy
from tests.integration.servicebus.conftest import declare_entities
from tests.integration.storage.conftest import empty_tables

from .conftest import functions_host

pytestmark = [pytest.mark.emulator]

FLOW = load_manifest(
    {
        "id": "jobs",
        "version": "1",
        "triggers": {"nightly": {"type": "Cron", "cron": "0 2 * * *"}},
        "steps": {
            "one": {"type": "Work", "inputs": "@triggerBody()"},
            "two": {"type": "Work", "runAfter": {"one": ["Succeeded"]}},
        },
    }
)


def _handlers(calls: list[str]) -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Work")
    async def work(ctx: StepContext, inputs: Any) -> Any:
        calls.append(ctx.step_key)
        return inputs

    return reg


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'floworch.db'}")
    yield opened
    await opened.close()


async def test_a_trigger_message_starts_a_run_and_an_unrouted_one_is_refused(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    calls: list[str] = []
    sb = declare_entities(emulator, [FLOW.id])
    async with functions_host(emulator, [FLOW], _handlers(calls), store, sb=sb) as host:
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            key = await send_trigger(
                client, "jobs", {"n": 3}, topic=sb.triggers_topic, idempotency_key="k-1"
            )
            await send_trigger(client, "ghost", {}, topic=sb.triggers_topic, idempotency_key="k-2")
        engine = host.app.runtime.engine

        async def started() -> bool:
            return await engine.store.count_runs(RunQuery(flow_id="jobs")) == 1

        await eventually(started, 30, "the trigger function to start a run")
        [run_id] = [r.run_id for r in await engine.store.list_runs(RunQuery(flow_id="jobs"))]
        run = await engine.wait_for_run(run_id, timeout=30)
    assert run.status == RunStatus.SUCCEEDED
    assert run.steps["one"].output == {"n": 3}
    assert calls == ["one", "two"]
    [trigger] = [i for i in host.invocations if i.function == "triggers-flow-jobs"]
    assert trigger.outcome == "completed" and trigger.message_id == key == "k-1"
    unrouted = [i for i in host.invocations if i.function == "triggers-unrouted"]
    assert unrouted and all("UnknownFlow" in i.outcome for i in unrouted)
    assert unrouted[0].message_id == "k-2"


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_function_that_raises_has_its_message_redelivered_and_the_run_finishes(
    emulator: ServiceBusEmulator, pg_url: str
) -> None:
    direct = SqlStore.from_url(to_async_url(pg_url))
    await empty_tables(direct)
    await direct.close()
    server = make_url(pg_url)
    calls: list[str] = []
    gate = Gate()
    with TcpProxy("127.0.0.1", server.port or 5432) as proxy:
        proxied = server.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        store = SqlStore.from_url(to_async_url(proxied))
        try:
            async with functions_host(
                emulator,
                [FLOW],
                _handlers(calls),
                store,
                dispatcher=gate.wrap,
                hold=timedelta(milliseconds=600),
                timer_every=None,
            ) as host:
                await host.app.runtime.start()  # the engine is built on first use
                engine = host.app.runtime.engine
                started = await engine.trigger("jobs", body={"n": 1})
                assert started.run_id is not None
                proxy.cut()
                try:
                    await gate.open()  # the first step's message arrives while the store is down

                    async def raised_twice() -> bool:
                        return host.stats.failures >= 2

                    await eventually(raised_twice, 60, "the step function to raise twice")
                finally:
                    proxy.restore()
                run = await engine.wait_for_run(started.run_id, timeout=60)
        finally:
            await store.close()
    assert run.status == RunStatus.SUCCEEDED, run.to_dict()
    assert calls == ["one", "two"]
    first = [i for i in host.invocations if i.message_id == f"{started.run_id}:one:1"]
    assert [i.delivery_count for i in first] == list(range(1, len(first) + 1))
    assert all(i.outcome.startswith("abandoned: step message") for i in first[:-1])
    assert first[-1].outcome == "completed"


async def test_the_background_pass_runs_in_one_app_at_a_time_and_seeds_cron_chains(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    sb = declare_entities(emulator, [FLOW.id])
    async with (
        functions_host(emulator, [FLOW], _handlers([]), store, sb=sb, timer_every=None) as one,
        functions_host(emulator, [FLOW], _handlers([]), store, sb=sb, timer_every=None) as two,
    ):
        for _ in range(3):
            await one.run_timer()
            await two.run_timer()
        state = await store.get_schedule_state("jobs", "nightly")
    passes = (one.app.runtime.background_passes, two.app.runtime.background_passes)
    assert passes == (3, 0)
    assert state is not None and state.next_fire_at is not None
    assert state.next_fire_at.hour == 2 and state.pending_sequence_number is not None
