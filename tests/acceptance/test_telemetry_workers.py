"""One run is one trace, across two real ``floworch worker`` processes on the Service Bus
emulator and PostgreSQL, exported by the real Azure Monitor and OTLP/HTTP exporters to capture
servers on loopback (both at once, as the Functions host allows)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from sqlalchemy.engine import make_url

from floworch.emulator import ServiceBusEmulator
from floworch.model.statuses import RunStatus
from floworch.storage.factory import open_store
from floworch.testing.servicebus import start_servicebus_emulator
from floworch.testing.telemetry_capture import (
    QUIET_AZURE_MONITOR,
    AppInsightsCapture,
    OtlpCapture,
)
from tests.acceptance.telemetry_support import DB_PASSWORD, TRACED, check_one_trace, traced_flow
from tests.acceptance.worker_support import (
    Cluster,
    PgSchema,
    declare_entities,
    eventually,
    require_postgres,
)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@dataclass
class TracedCluster(Cluster):
    """Workers that export to the capture servers."""

    extra: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env.items() if not k.startswith(("OTEL_", "APPLICATION"))}
        return {**env, **self.extra}


@pytest.fixture(scope="module")
def emulator() -> Iterator[ServiceBusEmulator]:
    emu = start_servicebus_emulator()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def pg() -> Iterator[PgSchema]:
    require_postgres()
    schema = PgSchema()
    try:
        yield schema
    finally:
        schema.drop()


def _shared_key(connection_string: str) -> str:
    for part in connection_string.split(";"):
        if part.startswith("SharedAccessKey="):
            return part.split("=", 1)[1]
    raise AssertionError(connection_string)


def _appinsights_spans(capture: AppInsightsCapture) -> list[dict[str, Any]]:
    spans = []
    for envelope in capture.envelopes("Request") + capture.envelopes("RemoteDependency"):
        data = envelope["data"]["baseData"]
        tags = envelope["tags"]
        request = envelope["name"].endswith("Request")
        spans.append(
            {
                "name": data["name"],
                "kind": "CONSUMER" if request else data.get("type", ""),
                "trace_id": tags["ai.operation.id"],
                "span_id": data["id"],
                "parent": tags.get("ai.operation.parentId", ""),
                "attributes": data.get("properties", {}),
                "instance": tags.get("ai.cloud.roleInstance"),
                "type": data.get("type"),
                "success": data.get("success"),
            }
        )
    for span in spans:
        # Requests are SERVER or CONSUMER spans; a PRODUCER span is a "Queue Message" dependency.
        if str(span["type"]).startswith("Queue Message"):
            span["kind"] = "PRODUCER"
    return spans


def _otlp_spans(capture: OtlpCapture) -> list[dict[str, Any]]:
    return [
        {**s, "parent": s["parent_span_id"], "instance": s["resource"]["service.instance.id"]}
        for s in capture.spans()
    ]


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.postgres
@pytest.mark.timeout(180)
async def test_a_run_over_two_workers_is_one_trace_in_both_backends(
    tmp_path: Path, emulator: ServiceBusEmulator, pg: PgSchema
) -> None:
    flows = traced_flow(tmp_path / "flows")
    entities = declare_entities(emulator, [TRACED])
    db_url = make_url(pg.url()).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    store = await open_store(db_url)  # migrated before the workers start
    appinsights, otlp = AppInsightsCapture(), OtlpCapture()
    cluster = TracedCluster(
        cwd=tmp_path,
        emulator=emulator,
        entities=entities,
        db_url=db_url,
        extra={
            **QUIET_AZURE_MONITOR,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": appinsights.connection_string,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "TRACED_DB_URL": db_url,
        },
    )
    try:
        workers = [cluster.start_worker(flows, "--concurrency", "2") for _ in range(2)]
        for worker in workers:
            await worker.wait_ready()
        # A trigger message from a producer with its own trace: the run continues it.
        async with (
            ServiceBusClient.from_connection_string(emulator.connection_string) as client,
            client.get_topic_sender(entities.triggers_topic) as sender,
        ):
            await sender.send_messages(
                ServiceBusMessage(
                    json.dumps({"order": 1}),
                    message_id="traced-1",
                    content_type="application/json",
                    application_properties={
                        "FlowId": TRACED,
                        "IdempotencyKey": "traced-1",
                        "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                    },
                )
            )

        async def finished() -> str | None:
            runs = await store.list_runs(_query())
            if runs and RunStatus(runs[0].status).is_terminal:
                return runs[0].run_id
            return None

        run_id = await eventually(
            finished, timeout=90, what="the run finished", detail=cluster.logs
        )
        run = await store.get_run(run_id)
        assert run is not None and run.status == RunStatus.SUCCEEDED, cluster.logs()
        for worker in workers:  # SIGTERM: each worker flushes its telemetry on the way out
            worker.proc.send_signal(signal.SIGTERM)
        for worker in workers:
            assert await worker.wait_exit(60) == 0, worker.log()
    finally:
        cluster.close()
        await store.close()
        appinsights.stop()
        otlp.stop()

    for name, spans in (
        ("appinsights", _appinsights_spans(appinsights)),
        ("otlp", _otlp_spans(otlp)),
    ):
        trace_id = check_one_trace(spans, run_id=run_id)
        assert trace_id == CALLER_TRACE, name
        (trigger,) = [s for s in spans if s["name"] == "flow.trigger"]
        assert trigger["parent"] == CALLER_SPAN, (name, trigger)
        assert trigger["kind"] == "CONSUMER", (name, trigger)

    # Application Insights: log records of the run in its operation, metrics with dimensions.
    messages = [
        e
        for e in appinsights.envelopes("Message")
        if e["data"]["baseData"]["properties"].get("floworch.run_id") == run_id
    ]
    logged = {e["data"]["baseData"]["message"] for e in messages}
    assert "done" in logged and "flaky attempt 2" in logged, logged
    run_finished = [
        e["data"]["baseData"]["properties"]
        for e in messages
        if e["data"]["baseData"]["properties"].get("floworch.event") == "run.finished"
    ]
    assert [p["floworch.status"] for p in run_finished] == ["Succeeded"]
    # The workbook and the docs' KQL name only dimensions that arrived.
    from tests.unit.telemetry.workbook_fields import dimensions, doc_queries, workbook_queries

    arrived = {
        key
        for e in appinsights.envelopes()
        for key in (e["data"]["baseData"].get("properties") or {})
    }
    for query in workbook_queries() + doc_queries():
        assert dimensions(query) - {"floworch.reason"} <= arrived, dimensions(query) - arrived
    assert {e["tags"]["ai.operation.id"] for e in messages} == {CALLER_TRACE}
    charged = [e for e in messages if e["data"]["baseData"]["message"].startswith("charged")]
    assert {e["data"]["baseData"]["properties"]["floworch.step_key"] for e in charged} == {
        f"each.{i}.charge" for i in range(6)
    }
    metrics = _appinsights_metrics(appinsights)
    assert ("floworch.runs.started", (("floworch.flow_id", TRACED),)) in metrics
    assert (
        "floworch.steps.retries",
        (("floworch.flow_id", TRACED), ("floworch.step_key", "flaky")),
    ) in metrics
    durations = {dims for name, dims in metrics if name == "floworch.step.duration"}
    assert (
        ("floworch.flow_id", TRACED),
        ("floworch.status", "Succeeded"),
        ("floworch.step_key", "each.charge"),
        ("floworch.step_type", "Charge"),
    ) in durations, durations

    # OTLP: the same log records and metrics.
    records = [r for r in otlp.log_records() if r["attributes"].get("floworch.run_id") == run_id]
    assert {r["trace_id"] for r in records} == {CALLER_TRACE}
    assert "done" in {r["body"] for r in records}
    points = {(p["name"], p["attributes"].get("floworch.step_key")) for p in otlp.metric_points()}
    assert ("floworch.step.duration", "each.charge") in points
    assert ("floworch.runs.finished", None) in points

    # No secret in anything either backend received, however it was encoded.
    secrets = [_shared_key(emulator.connection_string), DB_PASSWORD]
    for path, body in appinsights.raw() + otlp.raw():
        for secret in secrets:
            assert secret.encode() not in body, f"{secret!r} exported in {path}"
    assert any(b"SharedAccessKey=***" in body for _, body in appinsights.raw())


def _query() -> Any:
    from floworch.storage.records import RunQuery

    return RunQuery(flow_id=TRACED, limit=10)


def _appinsights_metrics(
    capture: AppInsightsCapture,
) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    found = set()
    for envelope in capture.envelopes("Metric"):
        data = envelope["data"]["baseData"]
        dims = tuple(sorted((data.get("properties") or {}).items()))
        for metric in data["metrics"]:
            found.add((metric["name"], dims))
    return found
