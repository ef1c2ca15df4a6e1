"""Lifecycle of the emulator: topology, clean stop, the CLI and the pytest fixture."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.server import EmulatorNotRunning
from floworch.testing.servicebus import servicebus_emulator  # noqa: F401  (fixture)

pytestmark = pytest.mark.emulator

TOPOLOGY = {
    "queues": [{"name": "orders", "maxDeliveryCount": 3}],
    "topics": [
        {
            "name": "events",
            "subscriptions": [
                {
                    "name": "flow-1",
                    "rules": [{"name": "f", "correlationFilter": {"properties": {"FlowId": "1"}}}],
                },
                {"name": "everything"},
            ],
        }
    ],
}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_topology_declares_entities_and_rules() -> None:
    with ServiceBusEmulator(TOPOLOGY) as emulator:
        assert emulator.backend.get_queue("orders").max_delivery_count == 3
        assert [r.name for r in emulator.backend.list_rules("events", "flow-1")] == ["f"]
        assert [r.name for r in emulator.backend.list_rules("events", "everything")] == ["$Default"]
        with (
            ServiceBusClient.from_connection_string(emulator.connection_string) as client,
            client.get_topic_sender("events") as sender,
        ):
            sender.send_messages(
                [
                    ServiceBusMessage("one", application_properties={"FlowId": "1"}),
                    ServiceBusMessage("two", application_properties={"FlowId": "2"}),
                ]
            )
        info = emulator.backend.get_subscription_runtime_info
        assert info("events", "flow-1").active_message_count == 1
        assert info("events", "everything").active_message_count == 2


def test_stop_leaves_no_threads_or_sockets() -> None:
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    emulator = ServiceBusEmulator(TOPOLOGY).start()
    with (
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_queue_sender("orders") as sender,
    ):
        sender.send_messages(ServiceBusMessage("sent"))
    # A peer that opened a connection and went quiet must not hold up or outlive stop().
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as idle:
        idle.sendall(b"AMQP\x00\x01\x00\x00")
        emulator.stop()
        while idle.recv(4096):
            pass  # the server closes the connection: recv reaches EOF
    leftover = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert [t.name for t in leftover if t.name.startswith("floworch")] == []
    assert open_fds() <= fds_before
    with pytest.raises(EmulatorNotRunning):
        _ = emulator.connection_string


def test_fixture_yields_a_running_emulator(
    servicebus_emulator: ServiceBusEmulator,  # noqa: F811
) -> None:
    assert servicebus_emulator.port != 5672
    assert servicebus_emulator.connection_string.endswith(";UseDevelopmentEmulator=true")
    assert servicebus_emulator.ca_file.exists()
