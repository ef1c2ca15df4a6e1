"""The step-consumer contract on the third runtime: the Function App's trigger functions, driven
by the local host from the emulator, PostgreSQL behind a loopback TCP proxy (a store outage is a
real cut connection). With the SDK-type binding the whole contract holds; with auto-complete,
poison ends in the dead-letter queue as MaxDeliveryCountExceeded (auto-complete cannot
dead-letter; the reason is in each failed invocation), which the overridden cases check."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from floworch.emulator import ServiceBusEmulator
from floworch.engine.engine import Engine
from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.functions import Settlement
from floworch.hosting.functions.local import LocalFunctionsHost
from floworch.model import FlowManifest
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import to_async_url
from floworch.testing.consumer_contract import (
    ConsumerContract,
    ConsumerEnvironment,
    DeadLettered,
    DispatcherWrapper,
    RuntimeUnderTest,
)
from floworch.testing.tcp_proxy import TcpProxy
from tests.integration.servicebus.conftest import declare_entities
from tests.integration.servicebus.test_consumer_contract import ServiceBusEnvironment
from tests.integration.storage.conftest import empty_tables

from .conftest import functions_host

pytestmark = [pytest.mark.emulator, pytest.mark.postgres, pytest.mark.slow]

MAX_DELIVERIES = 3


class FunctionsRuntime:
    def __init__(self, host: LocalFunctionsHost, env: FunctionsEnvironment) -> None:
        self.host = host
        self.env = env
        self.crashed = False

    @property
    def engine(self) -> Engine:
        return self.host.app.runtime.engine

    @property
    def retried(self) -> int:
        return self.host.app.runtime.held + self.host.stats.abandoned

    async def send_raw(self, body: bytes, *, route_flow_id: str, message_id: str) -> None:
        from azure.servicebus import ServiceBusMessage

        await (await self.env.sender()).send_messages(
            ServiceBusMessage(
                body, message_id=message_id, application_properties={"FlowId": route_flow_id}
            )
        )

    async def dead_letters(self) -> list[DeadLettered]:
        return await self.env.collect_dead_letters()

    async def crash(self) -> None:
        self.crashed = True
        await self.host.crash()


class FunctionsEnvironment(ServiceBusEnvironment):
    """The Service Bus environment of the worker's contract, with Function Apps as runtimes."""

    settlement = Settlement.ACTIONS

    @asynccontextmanager
    async def runtime(
        self,
        flows: Sequence[FlowManifest],
        handlers: HandlerRegistry,
        *,
        dispatcher: DispatcherWrapper | None = None,
    ) -> AsyncIterator[RuntimeUnderTest]:
        if self.sb is None:  # every runtime of one test shares the entities
            self._flow_ids = [flow.id for flow in flows]
            self.sb = declare_entities(
                self.emulator, self._flow_ids, lock_seconds=4, max_delivery_count=MAX_DELIVERIES
            )
        async with functions_host(
            self.emulator,
            flows,
            handlers,
            self.store,
            sb=self.sb,
            dispatcher=dispatcher,
            settlement=self.settlement,
            max_delivery_count=MAX_DELIVERIES,
            lock_renew_every=timedelta(seconds=1),
        ) as host:
            yield FunctionsRuntime(host, self)


async def _environment(
    emulator: ServiceBusEmulator, pg_url: str, settlement: Settlement
) -> AsyncIterator[ConsumerEnvironment]:
    direct = SqlStore.from_url(to_async_url(pg_url))
    await empty_tables(direct)
    await direct.close()
    server = make_url(pg_url)
    with TcpProxy("127.0.0.1", server.port or 5432) as proxy:
        proxied = server.set(host="127.0.0.1", port=proxy.port)
        store = SqlStore.from_url(to_async_url(proxied.render_as_string(hide_password=False)))
        env = FunctionsEnvironment(emulator, store, proxy)
        env.settlement = settlement
        try:
            yield env
        finally:
            await env.close()
            await store.close()


class TestFunctionsSdkTypeBinding(ConsumerContract):
    @pytest.fixture
    async def environment(
        self, emulator: ServiceBusEmulator, pg_url: str
    ) -> AsyncIterator[ConsumerEnvironment]:
        async for env in _environment(emulator, pg_url, Settlement.ACTIONS):
            yield env


class TestFunctionsAutoComplete(ConsumerContract):
    # Cases whose messages all end in Complete, or in a lapsed lock, settle the same way in both
    # modes; they run once, with the SDK-type binding above (test-time budget).
    test_duplicates_run_each_handler_once_per_attempt = None  # type: ignore[assignment]
    test_a_crashed_workers_step_is_redelivered_and_finished = None  # type: ignore[assignment]
    test_an_unstorable_output_fails_its_step_once = None  # type: ignore[assignment]

    @pytest.fixture
    async def environment(
        self, emulator: ServiceBusEmulator, pg_url: str
    ) -> AsyncIterator[ConsumerEnvironment]:
        async for env in _environment(emulator, pg_url, Settlement.AUTO):
            yield env

    async def _exhausted(self, runtime: Any, env: Any, ids: set[str]) -> dict[str, DeadLettered]:
        found = await self._dead_letters(runtime, env, ids)
        for letter in found.values():
            assert letter.reason == "MaxDeliveryCountExceeded", letter
        return found

    async def test_malformed_bodies_are_dead_lettered_at_once_with_their_reason(
        self, environment: ConsumerEnvironment
    ) -> None:
        """Auto-complete: each poison body fails every delivery with its reason, and Service Bus
        dead-letters it at its max delivery count; healthy runs go on meanwhile."""
        reg = HandlerRegistry()

        @reg.handler("Echo")
        async def echo(inputs: Any) -> Any:
            return inputs

        flow = FlowManifestFor("poison")
        async with environment.runtime([flow], reg) as runtime:
            await runtime.send_raw(b"not json {", route_flow_id="poison", message_id="not-json")
            started = await runtime.engine.trigger("poison")
            assert started.run_id is not None
            run = await runtime.engine.wait_for_run(started.run_id, timeout=environment.timeout)
            await self._exhausted(runtime, environment, {"not-json"})
            host = runtime.host  # type: ignore[attr-defined]
        assert run.status == "Succeeded"
        failed = [i for i in host.invocations if i.message_id == "not-json"]
        assert [i.delivery_count for i in failed] == list(range(1, MAX_DELIVERIES + 1))
        assert all("EnvelopeInvalid" in i.outcome and "not JSON" in i.outcome for i in failed)

    async def test_an_unknown_flow_is_dead_lettered_naming_the_flows_this_worker_runs(
        self, environment: ConsumerEnvironment
    ) -> None:
        reg = HandlerRegistry()

        @reg.handler("Echo")
        async def echo(inputs: Any) -> Any:
            return inputs

        from floworch.testing.consumer_contract import _envelope_body

        async with environment.runtime([FlowManifestFor("known")], reg) as runtime:
            await runtime.send_raw(
                _envelope_body("ghost"), route_flow_id="known", message_id="ghost-1"
            )
            await self._exhausted(runtime, environment, {"ghost-1"})
            host = runtime.host  # type: ignore[attr-defined]
        outcomes = [i.outcome for i in host.invocations if i.message_id == "ghost-1"]
        assert len(outcomes) == MAX_DELIVERIES
        assert all("UnknownFlow" in o and "known" in o for o in outcomes)

    async def test_a_bug_that_repeats_is_dead_lettered_and_healthy_runs_go_on(
        self, environment: ConsumerEnvironment
    ) -> None:
        from floworch.testing.consumer_contract import Gate

        reg = HandlerRegistry()

        @reg.handler("Echo")
        async def echo(inputs: Any) -> Any:
            return "ok"

        gate = Gate()
        flow = FlowManifestFor("buggy")
        async with environment.runtime([flow], reg, dispatcher=gate.wrap) as runtime:
            bad = await runtime.engine.trigger("buggy")
            good = await runtime.engine.trigger("buggy")
            assert bad.run_id is not None and good.run_id is not None
            environment.faults.poisoned_runs.add(bad.run_id)
            await gate.open()
            run = await runtime.engine.wait_for_run(good.run_id, timeout=environment.timeout)
            await self._exhausted(runtime, environment, {f"{bad.run_id}:a:1"})
        assert run.status == "Succeeded"


def FlowManifestFor(flow_id: str) -> FlowManifest:
    from floworch.model import load_manifest

    return load_manifest(
        {"id": flow_id, "version": "1", "steps": {"a": {"type": "Echo", "inputs": 1}}}
    )
