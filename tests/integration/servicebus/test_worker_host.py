"""The worker host on the emulator with a shared SQLite store: two workers share the work, every
core feature runs on Service Bus, duplicates are harmless, poison is dead-lettered."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from floworch import limits
from floworch.emulator import ServiceBusEmulator
from floworch.engine.context import StepContext
from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry, StepResult
from floworch.engine.ports import Dispatcher
from floworch.errors import StepError
from floworch.hosting.worker import WorkerHost, WorkerSettings
from floworch.model import load_manifest
from floworch.runtime.servicebus.config import ServiceBusConnection, ServiceBusSettings
from floworch.runtime.servicebus.names import UNROUTED_SUBSCRIPTION, subscription_name
from floworch.runtime.servicebus.triggers import TriggerSender, send_trigger
from floworch.storage.factory import open_store
from floworch.storage.port import Store

from .conftest import declare_entities

pytestmark = [pytest.mark.emulator, pytest.mark.slow]


def manifest(flow_id: str, steps: dict[str, Any], **extra: Any) -> Any:
    return load_manifest({"id": flow_id, "version": "1", "steps": steps, **extra})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}")
    yield opened
    await opened.close()


def worker(
    emulator: ServiceBusEmulator,
    store: Store,
    flows: list[Any],
    handlers: HandlerRegistry,
    sb: ServiceBusSettings,
    **options: Any,
) -> WorkerHost:
    dispatcher = options.pop("dispatcher", None)
    settings = WorkerSettings(
        servicebus=sb,
        grace=5.0,
        **options,
    )
    return WorkerHost(
        store=store,
        flows=flows,
        connection=ServiceBusConnection(connection_string=emulator.connection_string),
        handlers=handlers,
        settings=settings,
        dispatcher=dispatcher,
    )


async def test_two_workers_share_a_fan_out_and_every_step_runs_once(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    reg = HandlerRegistry()
    ran: Counter[str] = Counter()

    @reg.handler("Work")
    async def work(ctx: StepContext, inputs: Any) -> Any:
        ran[ctx.step_key] += 1
        await asyncio.sleep(0.01)
        return {"step": ctx.step_key}

    steps: dict[str, Any] = {"start": {"type": "Work"}}
    for i in range(20):
        steps[f"w{i}"] = {"type": "Work", "runAfter": {"start": ["Succeeded"]}}
    steps["join"] = {"type": "Work", "runAfter": {f"w{i}": ["Succeeded"] for i in range(20)}}
    flow = manifest("fan", steps)
    sb = declare_entities(emulator, ["fan"])
    a = worker(emulator, store, [flow], reg, sb)
    b = worker(emulator, store, [flow], reg, sb)
    async with a, b:
        await a.wait_receiving()
        await b.wait_receiving()
        result = await a.engine.trigger("fan", body={"n": 1})
        assert result.run_id is not None
        run = await a.engine.wait_for_run(result.run_id, timeout=60)
        pumps = (a.step_pumps["fan"], b.step_pumps["fan"])
    shared = [pump.stats.completed for pump in pumps]  # settled by the time stop() returned
    assert run.status == "Succeeded", run.to_dict()
    assert all(count == 1 for count in ran.values()) and len(ran) == 22
    assert all(step.attempts == 1 for step in run.steps.values())
    assert sum(shared) == 22 and min(shared) > 0, shared  # both workers took a share


async def test_core_features_on_service_bus(emulator: ServiceBusEmulator, store: Store) -> None:
    reg = HandlerRegistry()
    attempts: Counter[str] = Counter()
    polls: Counter[str] = Counter()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    @reg.handler("Flaky")
    async def flaky(ctx: StepContext, inputs: Any) -> Any:
        attempts[ctx.run_id] += 1
        if attempts[ctx.run_id] < 3:
            raise ConnectionError("transient")
        return "recovered"

    @reg.handler("Poll")
    async def poll(ctx: StepContext, inputs: Any) -> Any:
        polls[ctx.run_id] += 1
        if polls[ctx.run_id] < 3:
            return StepResult.pending(delay=timedelta(seconds=0.2))
        return {"polls": polls[ctx.run_id]}

    @reg.handler("Slow")
    async def slow(ctx: StepContext, inputs: Any) -> Any:
        await asyncio.sleep(30)
        return "too late"

    flow = manifest(
        "features",
        {
            "items": {"type": "Echo", "inputs": [1, 2, 3, 4]},
            "each": {
                "type": "ForEach",
                "forEach": "@steps('items').output",
                "concurrencyLimit": 2,
                "runAfter": {"items": ["Succeeded"]},
                "steps": {"double": {"type": "Echo", "inputs": "@item()"}},
            },
            "flaky": {
                "type": "Flaky",
                "retry": {
                    "maxAttempts": 5,
                    "initialIntervalSeconds": 0.1,
                    "maxIntervalSeconds": 0.2,
                },
                "runAfter": {"each": ["Succeeded"]},
            },
            "pause": {
                "type": "Delay",
                "inputs": {"delaySeconds": 0.3},
                "runAfter": {"flaky": ["Succeeded"]},
            },
            "poll": {"type": "Poll", "runAfter": {"pause": ["Succeeded"]}},
            "approve": {
                "type": "WaitForSignal",
                "inputs": {"signalName": "approved", "timeoutSeconds": 60},
                "runAfter": {"poll": ["Succeeded"]},
            },
            "done": {
                "type": "Echo",
                "inputs": "@steps('approve').output",
                "runAfter": {"approve": ["Succeeded"]},
            },
        },
    )
    slow_flow = manifest(
        "slow",
        {"wait": {"type": "Slow", "timeoutSeconds": 0.5}, "after": {"type": "Echo"}},
    )
    cancel_flow = manifest(
        "cancel", {"hold": {"type": "WaitForSignal", "inputs": {"signalName": "never"}}}
    )
    sb = declare_entities(emulator, ["features", "slow", "cancel"])
    async with worker(emulator, store, [flow, slow_flow, cancel_flow], reg, sb) as host:
        await host.wait_receiving()
        started = await host.engine.trigger("features")
        assert started.run_id is not None
        run_id = started.run_id
        for _ in range(600):
            steps = {s.step_key: s for s in await store.get_steps(run_id)}
            if steps.get("approve") is not None and steps["approve"].status == "Waiting":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the run never reached its signal: {steps}")
        assert await host.engine.deliver_signal(run_id, "approved", {"by": "ops"}) == "Delivered"
        run = await host.engine.wait_for_run(run_id, timeout=60)
        timed = await host.engine.trigger("slow")
        assert timed.run_id is not None
        timed_run = await host.engine.wait_for_run(timed.run_id, timeout=60)
        held = await host.engine.trigger("cancel")
        assert held.run_id is not None
        await asyncio.sleep(0.5)
        assert await host.engine.cancel_run(held.run_id, "test")
        cancelled = await host.engine.wait_for_run(held.run_id, timeout=30)
    assert run.status == "Succeeded", run.to_dict()
    assert run.steps["each"].output == [1, 2, 3, 4]
    assert run.steps["flaky"].attempts == 3 and run.steps["flaky"].output == "recovered"
    assert run.steps["poll"].output == {"polls": 3}
    assert run.steps["done"].output == {"by": "ops"}
    assert timed_run.status == "Failed"
    assert timed_run.steps["wait"].status == "TimedOut"
    assert cancelled.status == "Cancelled"


class Duplicating:
    """Sends every step message twice, as a redelivering transport would."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        await self.inner.enqueue(envelopes)
        await self.inner.enqueue(envelopes)

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        await self.inner.schedule(envelope, at)
        await self.inner.schedule(envelope, at)


async def test_every_message_sent_twice_runs_each_handler_once_per_attempt(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    reg = HandlerRegistry()
    calls: Counter[tuple[str, int]] = Counter()

    @reg.handler("Count")
    async def count(ctx: StepContext, inputs: Any) -> Any:
        calls[(ctx.step_key, ctx.attempt)] += 1
        if ctx.step_key == "retried" and ctx.attempt == 1:
            raise ConnectionError("once")
        return ctx.step_key

    flow = manifest(
        "dups",
        {
            "a": {"type": "Count"},
            "b": {"type": "Count", "runAfter": {"a": ["Succeeded"]}},
            "c": {"type": "Count", "runAfter": {"a": ["Succeeded"]}},
            "retried": {
                "type": "Count",
                "retry": {"maxAttempts": 2, "initialIntervalSeconds": 0.1},
                "runAfter": {"b": ["Succeeded"], "c": ["Succeeded"]},
            },
        },
    )
    # No duplicate detection on the topic, so both copies really arrive.
    sb = declare_entities(emulator, ["dups"], duplicate_detection=False)
    host = worker(emulator, store, [flow], reg, sb, dispatcher=Duplicating)
    async with host:
        await host.wait_receiving()
        started = await host.engine.trigger("dups")
        assert started.run_id is not None
        run = await host.engine.wait_for_run(started.run_id, timeout=60)
        await asyncio.sleep(1.0)  # let the second copies arrive and be dropped
        received = host.step_pumps["dups"].stats.received
    assert run.status == "Succeeded", run.to_dict()
    assert calls == Counter(
        {("a", 1): 1, ("b", 1): 1, ("c", 1): 1, ("retried", 1): 1, ("retried", 2): 1}
    )
    assert received >= 10  # every copy was delivered, and the claim dropped the second


async def test_poison_messages_are_dead_lettered_with_reasons(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    flow = manifest("poison", {"a": {"type": "Echo"}})
    sb = declare_entities(emulator, ["poison"])
    bad_version = StepEnvelope("poison", "r", "a", "Echo", 1).to_dict() | {"v": 99}
    unknown_flow = StepEnvelope("ghost", "r", "a", "Echo", 1).to_dict()
    async with (
        worker(emulator, store, [flow], reg, sb) as host,
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
    ):
        await host.wait_receiving()
        async with client.get_topic_sender(sb.steps_topic) as sender:
            for body, mid in (
                ("not json {", "m1"),
                (json.dumps(bad_version), "m2"),
                (json.dumps(unknown_flow), "m3"),
            ):
                await sender.send_messages(
                    ServiceBusMessage(
                        body, message_id=mid, application_properties={"FlowId": "poison"}
                    )
                )
        async with client.get_topic_sender(sb.triggers_topic) as sender:
            await sender.send_messages(
                ServiceBusMessage("{}", message_id="t1", application_properties={"FlowId": "ghost"})
            )
            await sender.send_messages(ServiceBusMessage("{}", message_id="t2"))
            too_deep = "[" * (limits.MAX_STORED_JSON_NESTING + 1) + "]" * (
                limits.MAX_STORED_JSON_NESTING + 1
            )
            for body, mid in (('{"x": NaN}', "t3"), ("[1e999]", "t4"), (too_deep, "t5")):
                await sender.send_messages(
                    ServiceBusMessage(
                        body, message_id=mid, application_properties={"FlowId": "poison"}
                    )
                )
        dead: dict[str, tuple[str | None, str | None]] = {}
        async with (
            client.get_subscription_receiver(
                sb.steps_topic, subscription_name("poison"), sub_queue="deadletter"
            ) as steps_dlq,
            client.get_subscription_receiver(
                sb.triggers_topic, UNROUTED_SUBSCRIPTION, sub_queue="deadletter"
            ) as triggers_dlq,
            client.get_subscription_receiver(
                sb.triggers_topic, subscription_name("poison"), sub_queue="deadletter"
            ) as flow_triggers_dlq,
        ):
            for _ in range(40):
                for receiver in (steps_dlq, triggers_dlq, flow_triggers_dlq):
                    for msg in await receiver.receive_messages(
                        max_message_count=10, max_wait_time=0.5
                    ):
                        dead[str(msg.message_id)] = (
                            msg.dead_letter_reason,
                            msg.dead_letter_error_description,
                        )
                        await receiver.complete_message(msg)
                if len(dead) == 8:
                    break
    assert dead["m1"][0] == "EnvelopeInvalid" and "not JSON" in (dead["m1"][1] or "")
    assert dead["m2"][0] == "EnvelopeInvalid" and "version 99" in (dead["m2"][1] or "")
    assert dead["m3"][0] == "UnknownFlow" and "ghost" in (dead["m3"][1] or "")
    assert dead["t1"][0] == "UnknownFlow"  # both reached the catch-all "unrouted"
    assert "no flow 'ghost' is deployed" in (dead["t1"][1] or "")
    assert dead["t2"][0] == "FlowIdMissing"
    assert dead["t3"][0] == "BodyNotJson" and "NaN is not JSON" in (dead["t3"][1] or "")
    assert dead["t4"][0] == "BodyNotJson" and "too large" in (dead["t4"][1] or "")
    # JSON, but more deeply nested than the store keeps: refused once, not retried (issue 16.17).
    assert dead["t5"][0] == "TriggerInvalid", dead["t5"]
    why = dead["t5"][1] or ""
    assert "the trigger body cannot be stored: it is nested 101 levels deep" in why


async def test_trigger_queue_starts_one_run_per_idempotency_key(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    flow = manifest(
        "orders",
        {"echo": {"type": "Echo", "inputs": "@triggerBody()?.orderId"}},
        triggers={"bus": {"type": "ServiceBus"}},
    )
    sb = declare_entities(emulator, ["orders"])
    async with (
        worker(emulator, store, [flow], reg, sb) as host,
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
    ):
        await host.wait_receiving()
        for _ in range(3):
            await send_trigger(
                client, "orders", {"orderId": "A-1"}, topic=sb.triggers_topic, idempotency_key="k-1"
            )
        async with TriggerSender(client, topic=sb.triggers_topic) as sender:
            await sender.send("orders", {"orderId": "B-2"}, headers={"X-Source": "test"})
        for _ in range(200):
            runs = await store.list_runs(_query("orders"))
            if len(runs) == 2 and all(r.status == "Succeeded" for r in runs):
                break
            await asyncio.sleep(0.05)
        outputs = sorted([(await host.engine.get_run(r.run_id)).steps["echo"].output for r in runs])
    assert outputs == ["A-1", "B-2"]
    assert {r.trigger_key for r in runs} == {"bus"}


def _query(flow_id: str) -> Any:
    from floworch.storage.records import RunQuery

    return RunQuery(flow_id=flow_id)


async def test_disabling_a_flow_stops_its_receiver_and_health_reports_it(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    flows = [manifest("on", {"a": {"type": "Echo"}}), manifest("off", {"a": {"type": "Echo"}})]
    sb = declare_entities(emulator, ["on", "off"])
    host = worker(emulator, store, flows, reg, sb, health_port=0)
    async with host, aiohttp.ClientSession() as http:
        await host.wait_receiving()
        assert host.health is not None
        base = f"http://127.0.0.1:{host.health.port}"
        async with http.get(f"{base}/readyz") as response:
            report = await response.json()
            assert response.status == 200, report
        assert report["flows"] == ["off", "on"]
        await host.engine.set_flow_enabled("off", False)
        await host.refresh()
        assert sorted(host.step_pumps) == ["on"]
        await host.engine.set_flow_enabled("off", True)
        await host.refresh()
        await host.wait_receiving()
        async with http.get(f"{base}/status") as response:
            assert (await response.json())["flows"] == ["off", "on"]
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        started = await host.engine.trigger("off", body=uuid.uuid4().hex)
        assert started.run_id is not None
        run = await host.engine.wait_for_run(started.run_id, timeout=30)
    assert run.status == "Succeeded"


async def test_a_step_longer_than_the_message_lock_keeps_its_lock(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    reg = HandlerRegistry()
    calls: Counter[str] = Counter()

    @reg.handler("Long")
    async def long_step(ctx: StepContext, inputs: Any) -> Any:
        calls[ctx.step_key] += 1
        await asyncio.sleep(7)  # well past the subscription's 3 s lock
        return "done"

    flow = manifest("long", {"a": {"type": "Long"}})
    sb = declare_entities(emulator, ["long"], lock_seconds=3)
    async with worker(emulator, store, [flow], reg, sb) as host:
        await host.wait_receiving()
        started = await host.engine.trigger("long")
        assert started.run_id is not None
        run = await host.engine.wait_for_run(started.run_id, timeout=60)
        pump = host.step_pumps["long"]
    assert run.status == "Succeeded"
    assert calls == Counter({"a": 1})
    assert pump.stats.received == 1 and pump.stats.completed == 1
    assert pump.stats.settle_failures == 0


async def test_a_retried_foreach_finishes_through_duplicate_detection(
    emulator: ServiceBusEmulator, store: Store
) -> None:
    """Issue 9.1 as it was found: `floworch retry RUN each` on Service Bus re-created the loop's
    steps under their first message ids, duplicate detection dropped them, and they sat Pending.
    The topic here detects duplicates, as deployed ones do."""
    reg = HandlerRegistry()
    declined = {2}
    charged: Counter[int] = Counter()

    @reg.handler("Charge")
    async def charge(inputs: Any) -> Any:
        charged[inputs] += 1
        if inputs in declined:
            raise StepError("declined", retryable=False)
        return inputs

    body = {"charge": {"type": "Charge", "inputs": "@item()"}}
    flow = manifest("retried", {"each": {"type": "ForEach", "forEach": [1, 2, 3], "steps": body}})
    sb = declare_entities(emulator, ["retried"], duplicate_detection=True)
    async with worker(emulator, store, [flow], reg, sb) as host:
        await host.wait_receiving()
        started = await host.engine.trigger("retried")
        assert started.run_id is not None
        first = await host.engine.wait_for_run(started.run_id, timeout=60)
        assert first.status == "Failed"
        declined.clear()
        await host.engine.retry_step(started.run_id, "each")
        again = await host.engine.wait_for_run(started.run_id, timeout=60)
        pump = host.step_pumps["retried"]
    assert again.status == "Succeeded", again.to_dict()
    assert again.steps["each"].output == [1, 2, 3]
    assert charged == Counter({1: 2, 2: 2, 3: 2})  # every iteration ran again, once
    assert pump.stats.dead_lettered == 0
