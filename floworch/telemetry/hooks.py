"""OpenTelemetry hooks of the engine: spans, metrics and trace context in envelopes.

Only ``opentelemetry-api`` is used here; with no SDK configured every call is a cheap no-op.
No host wires an exporter yet (Azure Monitor / OTLP): that is the observability issue's work.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode


class Telemetry:
    """Spans ``flow.trigger`` and ``flow.step`` and the engine's metrics."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("floworch", tracer_provider=tracer_provider)
        meter = metrics.get_meter("floworch", meter_provider=meter_provider)
        self.runs_started = meter.create_counter(
            "floworch.runs.started", description="Runs started"
        )
        self.runs_completed = meter.create_counter(
            "floworch.runs.completed", description="Runs finished, by status"
        )
        self.steps_completed = meter.create_counter(
            "floworch.steps.completed", description="Step executions finished, by status"
        )
        self.step_duration = meter.create_histogram(
            "floworch.step.duration", unit="s", description="Handler duration"
        )
        self.queue_delay = meter.create_histogram(
            "floworch.step.queue_delay", unit="s", description="Due time to start of execution"
        )
        self.retries = meter.create_counter(
            "floworch.steps.retries", description="Retries scheduled"
        )

    @staticmethod
    def inject() -> dict[str, str]:
        """The current trace context as W3C headers (``traceparent``, ``tracestate``)."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    @contextmanager
    def trigger_span(self, flow_id: str, trigger_key: str) -> Iterator[Span]:
        """The span of starting a run."""
        with self.tracer.start_as_current_span(
            "flow.trigger",
            kind=SpanKind.PRODUCER,
            attributes={"floworch.flow_id": flow_id, "floworch.trigger_key": trigger_key},
        ) as span:
            yield span

    @contextmanager
    def step_span(
        self, carrier: Mapping[str, str], attributes: Mapping[str, Any]
    ) -> Iterator[Span]:
        """The span of one step execution, a child of the context the envelope carried."""
        parent = propagate.extract(dict(carrier)) if carrier else None
        token = otel_context.attach(parent) if parent is not None else None
        try:
            with self.tracer.start_as_current_span(
                "flow.step", kind=SpanKind.CONSUMER, attributes=dict(attributes)
            ) as span:
                yield span
        finally:
            if token is not None:
                otel_context.detach(token)

    @staticmethod
    def finish_span(span: Span, status: str, error: Mapping[str, Any] | None) -> None:
        """Records the step's final status on its span."""
        span.set_attribute("floworch.status", status)
        if error:
            span.set_status(Status(StatusCode.ERROR, str(error.get("message", ""))))
