"""The step-consumer contract on the Service Bus runtime: a real worker host on the emulator,
PostgreSQL behind a loopback TCP proxy (so a store outage is a real cut connection)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from sqlalchemy.engine import make_url

from floworch.emulator import ServiceBusEmulator
from floworch.engine.engine import Engine
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.reconciler import ReconcilerSettings
from floworch.hosting.worker import WorkerHost, WorkerSettings
from floworch.model import FlowManifest
from floworch.runtime.servicebus.config import ServiceBusConnection, ServiceBusSettings
from floworch.runtime.servicebus.names import subscription_name
from floworch.runtime.servicebus.pump import MessagePump
from floworch.storage.port import Store
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import to_async_url
from floworch.testing.consumer_contract import (
    ConsumerContract,
    DeadLettered,
    DispatcherWrapper,
    RuntimeUnderTest,
)
from floworch.testing.faulty_store import StoreFaults, faulty_store
from floworch.testing.tcp_proxy import TcpProxy
from tests.integration.storage.conftest import empty_tables

from .conftest import declare_entities

pytestmark = [pytest.mark.emulator, pytest.mark.postgres]


def worker_settings(sb: ServiceBusSettings) -> WorkerSettings:
    return WorkerSettings(
        servicebus=sb,
        grace=0.5,
        tick=timedelta(milliseconds=200),
        reconciler=ReconcilerSettings(
            unsent_grace=timedelta(milliseconds=500), lost_after=timedelta(seconds=1)
        ),
        cron=False,
        triggers=False,
        lease=timedelta(seconds=2),
    )


class ServiceBusRuntime:
    def __init__(self, host: WorkerHost, env: ServiceBusEnvironment) -> None:
        self.host = host
        self.env = env
        self.crashed = False
        self._pumps: list[MessagePump] = list(host.step_pumps.values())

    @property
    def engine(self) -> Engine:
        return self.host.engine

    @property
    def retried(self) -> int:
        return sum(p.stats.retried_in_place + p.stats.abandoned for p in self._pumps)

    async def send_raw(self, body: bytes, *, route_flow_id: str, message_id: str) -> None:
        await (await self.env.sender()).send_messages(
            ServiceBusMessage(
                body, message_id=message_id, application_properties={"FlowId": route_flow_id}
            )
        )

    async def dead_letters(self) -> list[DeadLettered]:
        return await self.env.collect_dead_letters()

    async def crash(self) -> None:
        self.crashed = True
        await self.host.stop()


class ServiceBusEnvironment:
    timeout = 60.0

    def __init__(self, emulator: ServiceBusEmulator, store: Store, proxy: TcpProxy) -> None:
        self.emulator = emulator
        self.faults = StoreFaults()
        self.store = faulty_store(store, self.faults)
        self.proxy = proxy
        self.client = ServiceBusClient.from_connection_string(emulator.connection_string)
        self.sb: ServiceBusSettings | None = None
        self._flow_ids: list[str] = []
        self._dead: dict[str, DeadLettered] = {}
        self._dlq: list[ServiceBusReceiver] = []
        self._sender: ServiceBusSender | None = None
        self._links = AsyncExitStack()

    async def sender(self) -> ServiceBusSender:
        """One sender link for the test's raw messages (attaching a link is the slow part)."""
        assert self.sb is not None
        if self._sender is None:
            # Entered, not opened lazily: a lazy open inherits the short receive or send timeout
            # and fails on a loaded machine ("Timed out waiting for the AMQP link to open").
            self._sender = await self._links.enter_async_context(
                self.client.get_topic_sender(self.sb.steps_topic)
            )
        return self._sender

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
            self.sb = declare_entities(self.emulator, self._flow_ids)
        host = WorkerHost(
            store=self.store,
            flows=flows,
            connection=ServiceBusConnection(connection_string=self.emulator.connection_string),
            handlers=handlers,
            settings=worker_settings(self.sb),
            dispatcher=dispatcher,
        )
        await host.start()
        runtime = ServiceBusRuntime(host, self)
        try:
            await host.wait_receiving()
            yield runtime
        finally:
            if not runtime.crashed:
                await host.stop()

    async def set_store_down(self, down: bool) -> None:
        if down:
            self.proxy.cut()
        else:
            self.proxy.restore()

    async def collect_dead_letters(self) -> list[DeadLettered]:
        assert self.sb is not None
        if not self._dlq:
            self._dlq = [
                await self._links.enter_async_context(
                    self.client.get_subscription_receiver(
                        self.sb.steps_topic, subscription_name(flow_id), sub_queue="deadletter"
                    )
                )
                for flow_id in self._flow_ids
            ]
            # Opened here: a first receive_messages bounds the link's opening by its short
            # max_wait_time, which a loaded machine exceeds.
            for receiver in self._dlq:
                await receiver.__aenter__()
        for receiver in self._dlq:
            for message in await receiver.receive_messages(max_message_count=50, max_wait_time=0.2):
                self._dead[str(message.message_id)] = DeadLettered(
                    str(message.message_id),
                    str(message.dead_letter_reason),
                    str(message.dead_letter_error_description),
                )
                await receiver.complete_message(message)
        return list(self._dead.values())

    async def close(self) -> None:
        await self._links.aclose()
        await self.client.close()


@pytest.mark.slow
class TestServiceBusRuntime(ConsumerContract):
    @pytest.fixture
    async def environment(
        self, emulator: ServiceBusEmulator, pg_url: str
    ) -> AsyncIterator[ServiceBusEnvironment]:
        direct = SqlStore.from_url(to_async_url(pg_url))
        await empty_tables(direct)
        await direct.close()
        server = make_url(pg_url)
        with TcpProxy("127.0.0.1", server.port or 5432) as proxy:
            proxied = server.set(host="127.0.0.1", port=proxy.port)
            store = SqlStore.from_url(to_async_url(proxied.render_as_string(hide_password=False)))
            env = ServiceBusEnvironment(emulator, store, proxy)
            try:
                yield env
            finally:
                await env.close()
                await store.close()
