"""Poison on Service Bus (issue 16 item 2): each poison message is dead-lettered with its real
reason, at once or after a bounded retry, and never holds up a healthy run. On the code before
the step consumer, a body whose decoding raised something other than EnvelopeError (a bad
``traceContext``) or a step whose claim hit a bug was retried in place for a minute per delivery,
in a concurrency slot, and dead-lettered after ten deliveries as ``MaxDeliveryCountExceeded``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from floworch.emulator import ServiceBusEmulator
from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.worker import WorkerHost, WorkerSettings
from floworch.model import load_manifest
from floworch.runtime.servicebus.config import ServiceBusConnection, ServiceBusSettings
from floworch.runtime.servicebus.names import subscription_name
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.testing.faulty_store import StoreFaults, faulty_store

from .conftest import declare_entities

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

FLOW = load_manifest(
    {
        "id": "healthy",
        "version": "1",
        "steps": {
            "a": {"type": "Echo", "inputs": 1},
            "b": {"type": "Echo", "inputs": 2, "runAfter": {"a": ["Succeeded"]}},
            "c": {"type": "Echo", "inputs": 3, "runAfter": {"b": ["Succeeded"]}},
        },
    }
)


def _registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    return reg


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'poison.db'}")
    yield opened
    await opened.close()


def _worker(emulator: ServiceBusEmulator, store: Store, sb: ServiceBusSettings) -> WorkerHost:
    return WorkerHost(
        store=store,
        flows=[FLOW],
        connection=ServiceBusConnection(connection_string=emulator.connection_string),
        handlers=_registry(),
        settings=WorkerSettings(servicebus=sb, grace=1.0, cron=False, triggers=False),
    )


def _envelope(run_id: str, **changes: Any) -> str:
    return json.dumps(StepEnvelope("healthy", run_id, "a", "Echo", 1).to_dict() | changes)


async def _dead_letters(
    client: ServiceBusClient, sb: ServiceBusSettings, expected: int
) -> dict[str, tuple[str | None, str | None]]:
    found: dict[str, tuple[str | None, str | None]] = {}
    async with client.get_subscription_receiver(
        sb.steps_topic, subscription_name("healthy"), sub_queue="deadletter"
    ) as receiver:
        for _ in range(600):
            for message in await receiver.receive_messages(max_message_count=20, max_wait_time=0.2):
                found[str(message.message_id)] = (
                    message.dead_letter_reason,
                    message.dead_letter_error_description,
                )
                await receiver.complete_message(message)
            if len(found) >= expected:
                break
    return found


async def test_eight_poison_messages_are_dead_lettered_with_their_reasons_and_a_run_goes_on(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    faults = StoreFaults(poisoned_runs={"buggy-1", "buggy-2"})
    # Two slots only: poison that kept its slot while retrying would starve the healthy run.
    sb = replace(declare_entities(emulator, ["healthy"]), concurrency=2)
    poison = {
        "json-1": "not json {",
        "json-2": "[1, 2",
        "trace-1": _envelope("r1", traceContext="not an object"),
        "trace-2": _envelope("r2", traceContext=[1, 2, 3]),
        "ghost-1": json.dumps(StepEnvelope("ghost", "r3", "a", "Echo", 1).to_dict()),
        "ghost-2": json.dumps(StepEnvelope("ghost", "r4", "a", "Echo", 1).to_dict()),
        "bug-1": _envelope("buggy-1"),
        "bug-2": _envelope("buggy-2"),
    }
    host = _worker(emulator, faulty_store(store, faults), sb)
    async with (
        host,
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
    ):
        await host.wait_receiving()
        async with client.get_topic_sender(sb.steps_topic) as sender:
            for mid, body in poison.items():
                await sender.send_messages(
                    ServiceBusMessage(
                        body, message_id=mid, application_properties={"FlowId": "healthy"}
                    )
                )
        started = await host.engine.trigger("healthy")
        assert started.run_id is not None
        # Generous, yet well short of the minute a poison message used to stay in its slot.
        run = await host.engine.wait_for_run(started.run_id, timeout=45)
        dead = await _dead_letters(client, sb, len(poison))
        stats = host.step_pumps["healthy"].stats
    assert run.status == "Succeeded", run.to_dict()
    reasons = {mid: reason for mid, (reason, _) in dead.items()}
    assert reasons == {
        "json-1": "EnvelopeInvalid",
        "json-2": "EnvelopeInvalid",
        "trace-1": "EnvelopeInvalid",
        "trace-2": "EnvelopeInvalid",
        "ghost-1": "UnknownFlow",
        "ghost-2": "UnknownFlow",
        "bug-1": "UnexpectedError",
        "bug-2": "UnexpectedError",
    }
    assert "RuntimeError" in (dead["bug-1"][1] or "")
    assert stats.abandoned == 0  # nothing went back to wait for another delivery


async def test_an_outage_on_the_last_delivery_is_dead_lettered_with_its_real_reason(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    faults = StoreFaults(unavailable_runs={"stuck"})
    declared = declare_entities(emulator, ["healthy"], max_delivery_count=2)
    sb = replace(declared, retry_in_place=timedelta(seconds=1), max_delivery_count=2)
    host = _worker(emulator, faulty_store(store, faults), sb)
    async with (
        host,
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
    ):
        await host.wait_receiving()
        async with client.get_topic_sender(sb.steps_topic) as sender:
            await sender.send_messages(
                ServiceBusMessage(
                    _envelope("stuck"),
                    message_id="stuck-1",
                    application_properties={"FlowId": "healthy"},
                )
            )
        dead = await _dead_letters(client, sb, 1)
        stats = host.step_pumps["healthy"].stats
    reason, description = dead["stuck-1"]
    assert reason == "StoreUnavailable"  # not Service Bus's MaxDeliveryCountExceeded
    assert "refused a step claim" in (description or "")
    assert "delivery 2 of 2" in (description or "")
    assert stats.abandoned == 1 and stats.dead_lettered == 1
