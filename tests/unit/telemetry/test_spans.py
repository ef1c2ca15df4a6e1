"""The engine's spans and metrics, recorded by the SDK's in-memory exporter and reader (no I/O):
trigger -> dispatch -> step parentage, retries as new spans, signals and cron fires, dimensions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from floworch.engine.engine import Engine
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import ManualClock
from floworch.model import load_manifest
from floworch.storage.memory import MemoryStore
from floworch.telemetry import Telemetry, TriggerOrigin
from tests.unit.engine.support import START, RecordingDispatcher, flow

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Recorded:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.telemetry = Telemetry(tracer_provider, MeterProvider(metric_readers=[self.reader]))

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        found.extend((dict(p.attributes or {}), p) for p in m.data.data_points)
        return found


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    yield Recorded()


def engine_for(
    manifest: dict[str, Any], handlers: HandlerRegistry, telemetry: Telemetry
) -> tuple[Engine, RecordingDispatcher, ManualClock]:
    clock = ManualClock(START)
    dispatcher = RecordingDispatcher()
    engine = Engine(
        store=MemoryStore(),
        dispatcher=dispatcher,
        flows=[load_manifest(manifest)],
        handlers=handlers,
        clock=clock,
        telemetry=telemetry,
    )
    return engine, dispatcher, clock


async def drain(engine: Engine, dispatcher: RecordingDispatcher, clock: ManualClock) -> None:
    """Delivers every message (scheduled ones after moving the clock to them)."""
    while dispatcher.sent or dispatcher.scheduled:
        if not dispatcher.sent:
            envelope, at = dispatcher.scheduled.pop(0)
            clock.set(max(clock.now(), at))
            dispatcher.sent.append(envelope)
        for envelope in dispatcher.take():
            await engine.run_step(envelope)


def handlers() -> HandlerRegistry:
    reg = HandlerRegistry()
    calls: dict[str, int] = {}

    @reg.handler("Work")
    async def work(ctx: Any, inputs: Any) -> Any:
        return {"item": ctx.item}

    @reg.handler("Flaky")
    async def flaky(ctx: Any, inputs: Any) -> Any:
        calls["flaky"] = calls.get("flaky", 0) + 1
        if ctx.attempt == 1:
            raise RuntimeError("transient")
        return {"attempt": ctx.attempt}

    return reg


MANIFEST = flow(
    {
        "each": {"type": "ForEach", "forEach": [1, 2], "steps": {"w": {"type": "Work"}}},
        "flaky": {
            "type": "Flaky",
            "runAfter": {"each": ["Succeeded"]},
            "retry": {"maxAttempts": 2, "initialIntervalSeconds": 5},
        },
    }
)


async def test_every_step_span_is_a_child_of_the_dispatch_that_sent_it(recorded: Recorded) -> None:
    engine, dispatcher, clock = engine_for(MANIFEST, handlers(), recorded.telemetry)
    result = await engine.trigger("f", origin=TriggerOrigin.http({"traceparent": CALLER}))
    await drain(engine, dispatcher, clock)
    assert (await engine.get_run(result.run_id or "")).status == "Succeeded"

    spans = recorded.finished()
    assert {s.context.trace_id for s in spans} == {0x4BF92F3577B34DA6A3CE929D0E0E4736}
    (trigger,) = recorded.finished("flow.trigger")
    assert trigger.kind == SpanKind.SERVER and trigger.parent is not None
    assert trigger.parent.span_id == 0x00F067AA0BA902B7
    dispatches = {s.context.span_id: s for s in recorded.finished("flow.dispatch")}
    steps = recorded.finished("flow.step")
    # each, each.0.w, each.1.w, flaky twice (the retry is a new span in the same trace)
    assert sorted(str(s.attributes["floworch.step_key"]) for s in steps) == [  # type: ignore[index]
        "each",
        "each.0.w",
        "each.1.w",
        "flaky",
        "flaky",
    ]
    for step in steps:
        assert step.kind == SpanKind.CONSUMER and step.parent is not None
        sender = dispatches[step.parent.span_id]
        assert sender.kind == SpanKind.PRODUCER
        assert sender.attributes is not None and step.attributes is not None
        assert sender.attributes["floworch.seq"] == step.attributes["floworch.seq"]
        assert sender.attributes["messaging.message.id"] == step.attributes["messaging.message.id"]
    flaky = sorted(
        (s for s in steps if s.attributes and s.attributes["floworch.step_key"] == "flaky"),
        key=lambda s: int(s.attributes["floworch.attempt"]),  # type: ignore[arg-type,index]
    )
    assert [s.attributes["floworch.status"] for s in flaky if s.attributes] == [
        "Failed",
        "Succeeded",
    ]
    assert not flaky[0].status.is_ok and flaky[1].status.is_ok
    # The retry's message was sent by the failed attempt's span: the chain stays connected.
    retry_dispatch = dispatches[flaky[1].parent.span_id]  # type: ignore[union-attr]
    assert retry_dispatch.parent is not None
    assert retry_dispatch.parent.span_id == flaky[0].context.span_id


async def test_metrics_carry_flow_step_and_status(recorded: Recorded) -> None:
    engine, dispatcher, clock = engine_for(MANIFEST, handlers(), recorded.telemetry)
    await engine.trigger("f")
    await drain(engine, dispatcher, clock)

    durations = {
        (a["floworch.step_key"], a["floworch.status"])
        for a, _ in recorded.points("floworch.step.duration")
    }
    # ForEach children share one series: the manifest path without the index.
    assert durations >= {("each.w", "Succeeded"), ("flaky", "Failed"), ("flaky", "Succeeded")}
    assert [(a, p.value) for a, p in recorded.points("floworch.steps.retries")] == [
        ({"floworch.flow_id": "f", "floworch.step_key": "flaky"}, 1)
    ]
    assert [(a, p.value) for a, p in recorded.points("floworch.runs.finished")] == [
        ({"floworch.flow_id": "f", "floworch.status": "Succeeded"}, 1)
    ]
    assert [p.value for _, p in recorded.points("floworch.runs.started")] == [1]


async def test_a_duplicate_message_is_counted_and_runs_nothing(recorded: Recorded) -> None:
    engine, dispatcher, _ = engine_for(
        flow({"w": {"type": "Work"}}), handlers(), recorded.telemetry
    )
    await engine.trigger("f")
    (envelope,) = dispatcher.take()
    await engine.run_step(envelope)
    await engine.run_step(envelope)
    assert len(recorded.finished("flow.step")) == 1
    ((attributes, point),) = recorded.points("floworch.steps.claim_conflicts")
    assert attributes["floworch.flow_id"] == "f" and point.value == 1


async def test_a_signal_is_a_span_in_the_run_trace(recorded: Recorded) -> None:
    manifest = flow({"wait": {"type": "WaitForSignal", "inputs": {"signalName": "go"}}})
    engine, dispatcher, clock = engine_for(manifest, handlers(), recorded.telemetry)
    result = await engine.trigger("f")
    await drain(engine, dispatcher, clock)
    clock.advance(timedelta(seconds=30))
    await engine.deliver_signal(result.run_id or "", "go", {"ok": True})
    (trigger,) = recorded.finished("flow.trigger")
    (signal,) = recorded.finished("flow.signal")
    assert signal.context.trace_id == trigger.context.trace_id
    assert signal.attributes is not None and signal.attributes["floworch.signal"] == "go"
    ((_, waited),) = recorded.points("floworch.signal.wait_time")
    assert waited.sum == pytest.approx(30)


async def test_each_cron_fire_starts_a_trace_of_its_own(recorded: Recorded) -> None:
    manifest = flow(
        {"w": {"type": "Work"}}, triggers={"nightly": {"type": "Cron", "cron": "0 2 * * *"}}
    )
    engine, _, clock = engine_for(manifest, handlers(), recorded.telemetry)
    first = START.replace(hour=2, minute=0)
    clock.advance(first - START + timedelta(seconds=3))
    await engine.fire_schedule("f", "nightly", first)
    await engine.fire_schedule("f", "nightly", first + timedelta(days=1))
    fires = recorded.finished("flow.cron.fire")
    assert len(fires) == 2 and all(f.parent is None for f in fires)
    assert fires[0].context.trace_id != fires[1].context.trace_id
    triggers = recorded.finished("flow.trigger")
    assert {t.parent.span_id for t in triggers if t.parent} == {f.context.span_id for f in fires}
    lags = [p for _, p in recorded.points("floworch.cron.fire_lag")]
    assert lags and lags[0].count == 2
