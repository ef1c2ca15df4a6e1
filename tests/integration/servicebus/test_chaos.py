"""Chaos on the Service Bus runtime (issue 16, "Done means"): while handlers raise
BaseExceptions, hang past their timeout ignoring cancellation, and poison messages arrive, 50
healthy runs still finish with every step run exactly once, and no run stays Running.

A real worker host on the emulator, PostgreSQL as the store. In the second variant handlers also
return outputs the store cannot keep (NaN, deep nesting: their step fails once, issue 16.1) and
text with NUL characters, which JSON escapes and every store keeps as it is.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from floworch.emulator import ServiceBusEmulator
from floworch.engine.context import StepContext
from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.reconciler import ReconcilerSettings
from floworch.hosting.worker import WorkerHost, WorkerSettings
from floworch.model import load_manifest
from floworch.model.statuses import RunStatus
from floworch.runtime.servicebus.config import ServiceBusConnection
from floworch.runtime.servicebus.names import subscription_name
from floworch.storage.records import RunQuery
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import to_async_url
from tests.integration.storage.conftest import empty_tables

from .conftest import declare_entities

pytestmark = [pytest.mark.emulator, pytest.mark.postgres, pytest.mark.slow]

HEALTHY_RUNS = 50
CHAOS_RUNS = 24
TIMEOUT = 120.0

# What each chaos mode does, and how its step must end. Checked in this order, so that a mode
# the engine gets wrong fails the test as soon as its runs are done.
MISBEHAVIOURS = {
    "exit": "Failed",
    "interrupt": "Failed",
    "cancel": "Failed",
    "generator-exit": "Failed",
    "hang": "TimedOut",
}
UNSTORABLE = {"nan": "Failed", "nul": "Succeeded", "deep": "Failed"}

POISON = {
    "p-json": ("healthy", "not json {"),
    "p-version": (
        "healthy",
        json.dumps(StepEnvelope("healthy", "r", "a", "W", 1).to_dict() | {"v": 9}),
    ),
    "p-trace": (
        "chaos",
        json.dumps(StepEnvelope("chaos", "r", "x", "C", 1).to_dict() | {"traceContext": "x"}),
    ),
    "p-ghost": ("chaos", json.dumps(StepEnvelope("ghost", "r", "x", "C", 1).to_dict())),
    "p-missing": ("healthy", json.dumps({"v": 1, "flowId": "healthy"})),
    "p-binary": ("chaos", "\u0000\u0001"),
}


def _unstorable_output(mode: str) -> Any:
    """What a handler in an unstorable-output mode returns."""
    if mode == "nan":
        return {"value": float("nan")}
    if mode == "nul":
        return {"value": "a\u0000b"}
    if mode == "deep":
        return _deep(100_000)
    raise AssertionError(f"unknown chaos mode {mode}")


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _registry(calls: Counter[tuple[str, str, int]], release: threading.Event) -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Work")
    async def work(ctx: StepContext, inputs: Any) -> Any:
        calls[(ctx.run_id, ctx.step_key, ctx.attempt)] += 1
        await asyncio.sleep(0.005)
        return {"step": ctx.step_key}

    @reg.handler("ChaosAsync")
    async def chaos_async(ctx: StepContext, inputs: Any) -> Any:
        mode = inputs["mode"]
        await asyncio.sleep(0)
        if mode == "exit":
            raise SystemExit(3)
        if mode == "interrupt":
            raise KeyboardInterrupt()
        if mode == "cancel":
            raise asyncio.CancelledError()
        if mode == "generator-exit":
            raise GeneratorExit()
        if mode == "hang":
            while not release.is_set():
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    continue  # ignores its timeout on purpose
            return "too late"
        return _unstorable_output(mode)

    @reg.handler("ChaosSync")
    def chaos_sync(ctx: StepContext, inputs: Any) -> Any:
        mode = inputs["mode"]
        if mode == "hang":
            while not release.is_set():  # never looks at ctx.cancellation
                time.sleep(0.05)
            return "too late"
        if mode in ("exit", "generator-exit"):
            raise SystemExit(4)
        if mode == "interrupt":
            raise KeyboardInterrupt()
        if mode == "cancel":
            raise asyncio.CancelledError()
        return _unstorable_output(mode)

    return reg


FLOWS = [
    load_manifest(
        {
            "id": "healthy",
            "version": "1",
            "steps": {
                "a": {"type": "Work"},
                "b": {"type": "Work", "runAfter": {"a": ["Succeeded"]}},
                "c": {"type": "Work", "runAfter": {"b": ["Succeeded"]}},
            },
        }
    ),
    load_manifest(
        {
            "id": "chaos",
            "version": "1",
            "steps": {
                # Long enough that a step which returns at once never times out on a loaded
                # 2-core CI machine (0.5 s did once: a "deep" step ended TimedOut, not Failed).
                "x": {
                    "type": "ChaosAsync",
                    "inputs": {"mode": "@triggerBody().mode"},
                    "timeoutSeconds": 1.5,
                },
                "y": {
                    "type": "ChaosSync",
                    "inputs": {"mode": "@triggerBody().mode"},
                    "timeoutSeconds": 1.5,
                },
            },
        }
    ),
]


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[SqlStore]:
    opened = SqlStore.from_url(to_async_url(pg_url))
    await empty_tables(opened)
    yield opened
    await opened.close()


async def _dead_letters(receivers: list[ServiceBusReceiver], expected: int) -> set[str]:
    found: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while len(found) < expected and loop.time() < deadline:
        for receiver in receivers:
            for message in await receiver.receive_messages(max_message_count=50, max_wait_time=0.2):
                found.add(str(message.message_id))
                await receiver.complete_message(message)
    return found


@pytest.mark.parametrize(
    "unstorable",
    [
        False,
        True,
    ],
    ids=["misbehaving-handlers", "with-unstorable-outputs"],
)
async def test_healthy_runs_finish_exactly_once_through_chaos(
    emulator: ServiceBusEmulator, store: SqlStore, unstorable: bool
) -> None:
    rng = random.Random(1604)
    expected = MISBEHAVIOURS | (UNSTORABLE if unstorable else {})
    modes = [rng.choice(sorted(expected)) for _ in range(CHAOS_RUNS)]
    calls: Counter[tuple[str, str, int]] = Counter()
    release = threading.Event()
    sb = declare_entities(emulator, ["healthy", "chaos"])
    host = WorkerHost(
        store=store,
        flows=FLOWS,
        connection=ServiceBusConnection(connection_string=emulator.connection_string),
        handlers=_registry(calls, release),
        settings=WorkerSettings(
            servicebus=sb,
            grace=1.0,
            tick=timedelta(milliseconds=500),
            reconciler=ReconcilerSettings(
                unsent_grace=timedelta(seconds=1), lost_after=timedelta(seconds=5)
            ),
            cron=False,
            triggers=False,
            lease=timedelta(seconds=5),
        ),
    )
    try:
        async with (
            host,
            ServiceBusClient.from_connection_string(emulator.connection_string) as client,
            client.get_subscription_receiver(
                sb.steps_topic, subscription_name("healthy"), sub_queue="deadletter"
            ) as healthy_dlq,
            client.get_subscription_receiver(
                sb.steps_topic, subscription_name("chaos"), sub_queue="deadletter"
            ) as chaos_dlq,
        ):
            await host.wait_receiving()
            kinds = ["healthy"] * HEALTHY_RUNS + ["chaos"] * CHAOS_RUNS
            rng.shuffle(kinds)
            poison = iter(POISON.items())
            healthy: list[str] = []
            chaos: dict[str, str] = {}
            async with client.get_topic_sender(sb.steps_topic) as sender:
                for n, kind in enumerate(kinds):
                    if kind == "healthy":
                        started = await host.engine.trigger("healthy")
                        assert started.run_id is not None
                        healthy.append(started.run_id)
                    else:
                        mode = modes[len(chaos)]
                        started = await host.engine.trigger("chaos", body={"mode": mode})
                        assert started.run_id is not None
                        chaos[started.run_id] = mode
                    if n % 12 == 0 and (item := next(poison, None)) is not None:
                        mid, (flow_id, body) = item
                        await sender.send_messages(
                            ServiceBusMessage(
                                body, message_id=mid, application_properties={"FlowId": flow_id}
                            )
                        )
            for run_id in healthy:
                run = await host.engine.wait_for_run(run_id, timeout=TIMEOUT)
                assert run.status == "Succeeded", run.to_dict()
            for mode, step_status in expected.items():
                for run_id in (r for r, m in chaos.items() if m == mode):
                    run = await host.engine.wait_for_run(run_id, timeout=TIMEOUT)
                    run_status = "Succeeded" if step_status == "Succeeded" else "Failed"
                    assert run.status == run_status, (mode, run.to_dict())
                    assert {s.status for s in run.steps.values()} == {step_status}, mode
                    if mode == "nul":
                        outputs = {key: step.output for key, step in run.steps.items()}
                        assert outputs == {"x": {"value": "a\x00b"}, "y": {"value": "a\x00b"}}
            dead = await _dead_letters([healthy_dlq, chaos_dlq], len(POISON))
            running = await store.list_runs(
                RunQuery(statuses=frozenset({RunStatus.RUNNING}), limit=10)
            )
            pumps_alive = all(p.running for p in host.step_pumps.values())
    finally:
        release.set()
    assert running == []
    assert dead == set(POISON)
    assert pumps_alive
    # Exactly once: every healthy step ran one attempt, once.
    healthy_calls = {key: n for key, n in calls.items() if key[0] in set(healthy)}
    assert len(healthy_calls) == 3 * HEALTHY_RUNS
    assert set(healthy_calls.values()) == {1}
    assert {key[2] for key in healthy_calls} == {1}
