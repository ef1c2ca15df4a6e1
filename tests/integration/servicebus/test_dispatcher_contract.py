"""The dispatcher port's shared contract, on the Service Bus runtime through the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from azure.servicebus import ServiceBusReceivedMessage

from floworch.emulator import ServiceBusEmulator
from floworch.engine.envelope import StepEnvelope
from floworch.runtime.servicebus.config import ServiceBusConnection
from floworch.runtime.servicebus.connection import open_client
from floworch.runtime.servicebus.dispatcher import ServiceBusDispatcher
from floworch.runtime.servicebus.messages import envelope_of
from floworch.runtime.servicebus.names import subscription_name
from floworch.runtime.servicebus.pump import COMPLETE, Delivery, MessagePump, Source, Verdict
from floworch.testing.dispatcher_contract import DispatcherContract, DispatcherHarness

from .conftest import declare_entities

pytestmark = pytest.mark.emulator


class TestServiceBusDispatcher(DispatcherContract):
    @pytest.fixture
    async def harness(self, emulator: ServiceBusEmulator) -> AsyncIterator[DispatcherHarness]:
        settings = declare_entities(emulator, ["contract"])
        handle = open_client(ServiceBusConnection(connection_string=emulator.connection_string))
        dispatcher = ServiceBusDispatcher(handle.client, topic=settings.steps_topic)
        pumps: list[MessagePump] = []

        async def start(consumer: Callable[[StepEnvelope], Awaitable[object]]) -> None:
            async def handle_message(message: ServiceBusReceivedMessage, _: Delivery) -> Verdict:
                await consumer(envelope_of(message))
                return COMPLETE

            pump = MessagePump(
                handle.client,
                Source(topic=settings.steps_topic, subscription=subscription_name("contract")),
                handle_message,
                concurrency=16,
                receive_wait=0.5,
            )
            pump.start()
            pumps.append(pump)
            await pump.wait_receiving(30)

        async def stop() -> None:
            for pump in pumps:
                await pump.stop(5)

        yield DispatcherHarness(dispatcher, start=start, stop=stop)
        await dispatcher.close()
        await handle.close()
