"""Topics, subscription rules and scheduling through the real aio SDK against the emulator."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.management import ServiceBusAdministrationClient

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.entities import (
    CorrelationFilter,
    QueueSettings,
    RuleSettings,
    SqlFilter,
    SubscriptionSettings,
    TopicSettings,
)

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator() as emu:
        yield emu


@pytest.fixture
async def client(emulator: ServiceBusEmulator) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(emulator.connection_string) as sb:
        yield sb


def new_topic(emulator: ServiceBusEmulator, *subscriptions: str) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    emulator.backend.create_topic(TopicSettings(name=name))
    for sub in subscriptions:
        emulator.backend.create_subscription(SubscriptionSettings(topic_name=name, name=sub))
    return name


def only_rule(emulator: ServiceBusEmulator, topic: str, sub: str, rule: RuleSettings) -> None:
    emulator.backend.delete_rule(topic, sub, "$Default")
    emulator.backend.create_rule(rule)


async def receive(
    receiver: ServiceBusReceiver, count: int, timeout: float = 20
) -> list[ServiceBusReceivedMessage]:
    got: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += await receiver.receive_messages(max_message_count=count - len(got), max_wait_time=1)
    return got


async def drain(receiver: ServiceBusReceiver) -> list[str]:
    got = await receiver.receive_messages(max_message_count=50, max_wait_time=1)
    for msg in got:
        await receiver.complete_message(msg)
    return sorted(str(m) for m in got)


async def test_correlation_filter_on_flow_id_routes_only_matching(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    topic = new_topic(emulator, "flow-a", "flow-b", "all")
    for sub, flow in (("flow-a", "A"), ("flow-b", "B")):
        only_rule(
            emulator,
            topic,
            sub,
            RuleSettings(
                topic_name=topic,
                subscription_name=sub,
                name="by-flow",
                filter=CorrelationFilter(properties={"FlowId": flow}),
            ),
        )
    async with client.get_topic_sender(topic) as sender:
        await sender.send_messages(
            [
                ServiceBusMessage(f"{flow}{i}", application_properties={"FlowId": flow})
                for flow in ("A", "B", "C")
                for i in range(2)
            ]
        )
    async with (
        client.get_subscription_receiver(topic, "flow-a") as a,
        client.get_subscription_receiver(topic, "flow-b") as b,
        client.get_subscription_receiver(topic, "all") as everything,
    ):
        assert len(await receive(everything, 6)) == 6
        assert await drain(a) == ["A0", "A1"]
        assert await drain(b) == ["B0", "B1"]


async def test_sql_filter_and_action(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    topic = new_topic(emulator, "big")
    only_rule(
        emulator,
        topic,
        "big",
        RuleSettings(
            topic_name=topic,
            subscription_name="big",
            name="big-orders",
            filter=SqlFilter("amount > 100 AND sys.Label = 'order'"),
            action="SET routed = 'yes'",
        ),
    )
    async with client.get_topic_sender(topic) as sender:
        await sender.send_messages(
            [
                ServiceBusMessage("small", subject="order", application_properties={"amount": 5}),
                ServiceBusMessage("large", subject="order", application_properties={"amount": 500}),
                ServiceBusMessage(
                    "other", subject="refund", application_properties={"amount": 500}
                ),
            ]
        )
    async with client.get_subscription_receiver(topic, "big") as receiver:
        [msg] = await receive(receiver, 1)
        await receiver.complete_message(msg)
        assert await receiver.receive_messages(max_wait_time=1) == []
    assert str(msg) == "large"
    props = msg.application_properties or {}
    assert props.get(b"routed", props.get("routed")) in (b"yes", "yes")


async def test_schedule_and_cancel(emulator: ServiceBusEmulator, client: ServiceBusClient) -> None:
    topic = new_topic(emulator, "s")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=700)
    async with client.get_topic_sender(topic) as sender:
        [kept] = await sender.schedule_messages(ServiceBusMessage("kept"), soon)
        # Cancelled long before it is due, however slow the machine: no race with delivery.
        later = soon + dt.timedelta(hours=1)
        [cancelled] = await sender.schedule_messages(ServiceBusMessage("cancelled"), later)
        await sender.cancel_scheduled_messages(cancelled)
        # a plain send with scheduled_enqueue_time_utc is scheduled too
        await sender.send_messages(ServiceBusMessage("plain", scheduled_enqueue_time_utc=soon))
    assert kept != cancelled
    async with client.get_subscription_receiver(topic, "s") as receiver:
        got = await receive(receiver, 2)
        arrived = dt.datetime.now(dt.UTC)
        for msg in got:
            await receiver.complete_message(msg)
        assert await receiver.receive_messages(max_wait_time=1.5) == []
    assert emulator.backend.get_topic_runtime_info(topic).scheduled_message_count == 0
    assert sorted(str(m) for m in got) == ["kept", "plain"]
    assert arrived >= soon
    assert all(m.scheduled_enqueue_time_utc is not None for m in got)


async def test_scheduled_queue_message_is_peekable_before_due(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    emulator.backend.create_queue(QueueSettings(name=queue))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    async with client.get_queue_sender(queue) as sender:
        [seq] = await sender.schedule_messages(ServiceBusMessage("later"), later)
    async with client.get_queue_receiver(queue) as receiver:
        [peeked] = await receiver.peek_messages(5)
        assert await receiver.receive_messages(max_wait_time=1) == []
    assert peeked.sequence_number == seq
    assert str(peeked.state) in ("ServiceBusMessageState.SCHEDULED", "2")
    assert emulator.backend.get_queue_runtime_info(queue).scheduled_message_count == 1


async def test_admin_client_creates_entities_used_over_amqp(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = f"adm-{uuid.uuid4().hex[:8]}"
    admin = ServiceBusAdministrationClient.from_connection_string(
        emulator.management_connection_string, connection_verify=str(emulator.ca_file)
    )
    with admin:
        admin.create_queue(queue, max_delivery_count=4)
        assert admin.get_queue(queue).max_delivery_count == 4
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages(ServiceBusMessage("via-admin"))
        assert admin.get_queue_runtime_properties(queue).active_message_count == 1
