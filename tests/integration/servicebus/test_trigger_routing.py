"""Trigger messages reach only workers that run their flow (issue 9.4).

Two workers run different flows against one namespace whose entities come from the topology
manager (each deployment applying its own flows, as ``--auto-create-topology`` does): a trigger
of flow B waits in B's subscription of the triggers topic while only A's worker runs, and B's
worker starts it once it comes; a trigger naming no deployed flow is dead-lettered from the
catch-all ``unrouted`` with its reason. Nothing is dead-lettered by a worker that merely does
not run the flow.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.management import ServiceBusAdministrationClient

from floworch.emulator import ServiceBusEmulator
from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.worker import WorkerHost, WorkerSettings
from floworch.model import FlowManifest, load_manifest
from floworch.runtime.servicebus.config import ServiceBusConnection, ServiceBusSettings
from floworch.runtime.servicebus.names import UNROUTED_SUBSCRIPTION, subscription_name
from floworch.runtime.servicebus.topology import (
    TopologySettings,
    apply_topology,
    desired_topology,
)
from floworch.runtime.servicebus.triggers import send_trigger
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.storage.records import RunQuery, RunRecord

pytestmark = pytest.mark.emulator

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await check()
        if found is not None:
            return found
        assert loop.time() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}")
    yield opened
    await opened.close()


def flow(flow_id: str) -> FlowManifest:
    return load_manifest(
        {
            "id": flow_id,
            "version": "1",
            "triggers": {"bus": {"type": "ServiceBus"}},
            "steps": {"echo": {"type": "Echo", "inputs": "@triggerBody()"}},
        }
    )


def handlers() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    return reg


def apply(emulator: ServiceBusEmulator, flows: list[FlowManifest], names: TopologySettings) -> None:
    with ServiceBusAdministrationClient.from_connection_string(
        emulator.management_connection_string,
        connection_verify=str(emulator.ca_file),
        retry_total=0,
    ) as admin:
        apply_topology(admin, desired_topology(flows, names))


async def runs_of(store: Store, flow_id: str, count: int) -> list[RunRecord] | None:
    runs = list(await store.list_runs(RunQuery(flow_id=flow_id)))
    done = [r for r in runs if r.status == "Succeeded"]
    return runs if len(runs) == count and len(done) == count else None


async def test_two_workers_running_different_flows_start_only_their_own_triggers(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = TopologySettings(
        steps_topic=f"steps-{suffix}",
        triggers_topic=f"triggers-{suffix}",
        cron_queue=f"cron-{suffix}",
    )
    sb = ServiceBusSettings(
        steps_topic=names.steps_topic,
        triggers_topic=names.triggers_topic,
        cron_queue=names.cron_queue,
        receive_wait=0.5,
    )
    # Each deployment applies the topology of its own flows to the shared namespace.
    await asyncio.to_thread(apply, emulator, [flow("alpha")], names)
    await asyncio.to_thread(apply, emulator, [flow("beta")], names)

    def worker(flow_id: str) -> WorkerHost:
        return WorkerHost(
            store=store,
            flows=[flow(flow_id)],
            connection=ServiceBusConnection(connection_string=emulator.connection_string),
            handlers=handlers(),
            settings=WorkerSettings(servicebus=sb, grace=2.0, cron=False),
        )

    topic = names.triggers_topic
    async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        alpha = worker("alpha")
        await alpha.start()
        try:
            await alpha.wait_receiving()
            for key in ("b-1", "b-2"):
                await send_trigger(client, "beta", {"k": key}, topic=topic, idempotency_key=key)
            await send_trigger(client, "alpha", {"k": "a-1"}, topic=topic, idempotency_key="a-1")
            await eventually(lambda: runs_of(store, "alpha", 1), "alpha's run")
            # Beta's triggers wait for a worker that runs beta; alpha's worker never took them.
            waiting = emulator.backend.get_subscription_runtime_info(
                topic, subscription_name("beta")
            )
            assert waiting.active_message_count == 2
            assert await store.list_runs(RunQuery(flow_id="beta")) == []

            beta = worker("beta")
            await beta.start()
            try:
                runs = await eventually(lambda: runs_of(store, "beta", 2), "beta's two runs")
                assert {r.idempotency_key for r in runs} == {"b-1", "b-2"}

                await send_trigger(client, "ghost", {}, topic=topic, idempotency_key="g-1")

                async def ghost_dead_lettered() -> int | None:
                    info = emulator.backend.get_subscription_runtime_info(
                        topic, UNROUTED_SUBSCRIPTION
                    )
                    return info.dead_letter_message_count or None

                assert await eventually(ghost_dead_lettered, "the unknown flow's trigger") == 1
                for host in (alpha, beta):
                    for source, pump in host.queue_pumps.items():
                        if UNROUTED_SUBSCRIPTION not in source:
                            assert pump.stats.dead_lettered == 0, (source, vars(pump.stats))
            finally:
                await beta.stop()
        finally:
            await alpha.stop()
    for flow_id in ("alpha", "beta"):
        info = emulator.backend.get_subscription_runtime_info(topic, subscription_name(flow_id))
        assert (info.active_message_count, info.dead_letter_message_count) == (0, 0)
