"""Telemetry through the Function App's entry points: a trigger message carrying a W3C
``traceparent``, delivered to the generated ``triggers-flow-hello`` function, starts a run whose
spans (the trigger, each dispatch, each step run by ``steps-flow-hello``) continue the caller's
trace. The app runs in its own process (``python -m floworch.hosting.functions.local``, so the
telemetry it configures on first use is the process's own) and exports over OTLP to a capture
server; the spans are read once the process has exited, which flushes them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from floworch.hosting.functions.runtime import TELEMETRY_SERVICE
from floworch.testing.servicebus import start_servicebus_emulator
from floworch.testing.telemetry_capture import QUIET_AZURE_MONITOR, OtlpCapture
from tests.acceptance.conftest import ROOT
from tests.acceptance.functions_support import (
    Process,
    app_copy,
    app_env,
    free_port,
    wait_for_runs,
)

CALLER_TRACE = "5b8aa5a2d2c872e8321cf37308d69df2"
CALLER_SPAN = "051581bf3cb55c13"


async def send_trigger(connection: str) -> None:
    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_topic_sender("flow-triggers") as sender,
    ):
        await sender.send_messages(
            ServiceBusMessage(
                json.dumps({"name": "Ada"}),
                message_id="traced-hello-1",
                content_type="application/json",
                application_properties={
                    "FlowId": "hello",
                    "IdempotencyKey": "traced-hello-1",
                    "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                },
            )
        )


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.timeout(240)
def test_a_trigger_message_with_a_traceparent_continues_its_trace(tmp_path: Path) -> None:
    app = app_copy(tmp_path / "app")
    db_file = app / ".floworch" / "traced.db"
    emulator = start_servicebus_emulator(ROOT / "topology" / "servicebus.json")
    otlp = OtlpCapture()
    host: Process | None = None
    try:
        env = app_env(
            {
                **QUIET_AZURE_MONITOR,
                "ServiceBusConnection": emulator.connection_string,
                "FLOWORCH_DB_URL": f"sqlite:///{db_file}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            }
        )
        host = Process(
            [
                *(sys.executable, "-m", "floworch.hosting.functions.local"),
                *("--port", str(free_port()), "--timer-every", "3600"),
            ],
            cwd=app,
            env=env,
            log=tmp_path / "host.log",
        )
        host.wait_for("HTTP function at")
        asyncio.run(send_trigger(emulator.connection_string))
        (run,) = wait_for_runs(
            db_file,
            lambda runs: bool(runs) and runs[0].status == "Succeeded",
            what="the traced run to succeed",
            process=host,
        )
        code = host.stop()  # exits: the process's tracer provider flushes its spans
        assert code == 0, host.stderr()
        spans = otlp.spans()
    finally:
        if host is not None:
            host.stop()
        otlp.stop()
        emulator.stop()

    mine = [s for s in spans if s["attributes"].get("floworch.run_id") == run.run_id]
    assert {s["trace_id"] for s in mine} == {CALLER_TRACE}, mine
    assert {s["resource"]["service.name"] for s in mine} == {TELEMETRY_SERVICE}
    (trigger,) = [s for s in mine if s["name"] == "flow.trigger"]
    assert trigger["parent_span_id"] == CALLER_SPAN and trigger["kind"] == "CONSUMER", trigger
    dispatches = {s["span_id"]: s for s in mine if s["name"] == "flow.dispatch"}
    steps = [s for s in mine if s["name"] == "flow.step"]
    assert sorted(s["attributes"]["floworch.step_key"] for s in steps) == ["greet", "shout"]
    for step in steps:
        parent = dispatches.get(step["parent_span_id"])
        assert parent is not None, f"flow.step {step['attributes']} has no flow.dispatch parent"
        assert parent["attributes"]["floworch.step_key"] == step["attributes"]["floworch.step_key"]
