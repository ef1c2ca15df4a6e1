"""The engine's OpenTelemetry hooks: one run is one trace.

Spans:
- ``flow.trigger``: starting a run. SERVER when started over HTTP, CONSUMER for a trigger
  message, INTERNAL otherwise (CLI, Python, a cron fire); a child of the caller's trace context
  when the request or message carried one. The run stores this span's context.
- ``flow.dispatch``: PRODUCER, one per step message sent, with ``messaging.*`` attributes; its
  context travels in the message (envelope and application properties).
- ``flow.step``: CONSUMER, one per executed dispatch, a child of the ``flow.dispatch`` that sent
  it, so the trace crosses messages and processes; a retry or poll is a new span in the trace.
- ``flow.signal``: a signal delivered to a run (a child of the run's trace, linked to the
  caller's), ``flow.cron.fire``: a cron fire time starting its run (a new trace per fire).

Only ``opentelemetry-api`` is needed: with no SDK configured every call is a cheap no-op.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from floworch.telemetry import propagation
from floworch.telemetry.metrics import FLOW, REASON, STEP, EngineMetrics, step_template

if TYPE_CHECKING:
    from floworch.engine.envelope import StepEnvelope

_PAYLOAD_LIMIT = 4096


class OriginKind(StrEnum):
    """Where a run (or a signal) came from: decides the kind of its span."""

    INTERNAL = "internal"
    HTTP = "http"
    MESSAGE = "message"


@dataclass(frozen=True)
class TriggerOrigin:
    """Who is starting a run: the span kind and the caller's W3C trace context, if any."""

    kind: OriginKind = OriginKind.INTERNAL
    carrier: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def http(cls, headers: Mapping[str, str]) -> TriggerOrigin:
        """An HTTP request (its ``traceparent``/``tracestate`` headers continue the trace)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        carrier = {
            name: lowered[name]
            for name in (propagation.TRACEPARENT, propagation.TRACESTATE)
            if lowered.get(name)
        }
        return cls(OriginKind.HTTP, carrier)

    @classmethod
    def message(cls, properties: Mapping[Any, Any] | None) -> TriggerOrigin:
        """A received message (``traceparent`` or ``Diagnostic-Id`` continue the trace)."""
        return cls(OriginKind.MESSAGE, propagation.carrier_from_properties(properties))

    @property
    def span_kind(self) -> SpanKind:
        return {
            OriginKind.HTTP: SpanKind.SERVER,
            OriginKind.MESSAGE: SpanKind.CONSUMER,
        }.get(self.kind, SpanKind.INTERNAL)


@dataclass(frozen=True)
class MessagingTarget:
    """Where step messages go, for the ``messaging.*`` attributes of ``flow.dispatch``."""

    system: str = "floworch.inprocess"
    destination: str = "steps"


def messaging_target(dispatcher: object) -> MessagingTarget:
    """What a dispatcher sends to: Service Bus dispatchers name their topic."""
    topic = getattr(dispatcher, "topic", None)
    if isinstance(topic, str):
        return MessagingTarget("servicebus", topic)
    return MessagingTarget()


class Telemetry:
    """The spans and metrics of one engine (and of the runtimes around it).

    Args:
        tracer_provider / meter_provider: default: the process's global ones (what
            :func:`floworch.telemetry.configure` installed, or no-ops).
        capture_payloads: add trigger bodies and step outputs to spans (off: they may hold
            personal data or secrets).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: Any = None,
        *,
        capture_payloads: bool = False,
    ) -> None:
        self.tracer = trace.get_tracer("floworch", tracer_provider=tracer_provider)
        self.metrics = EngineMetrics(meter_provider)
        self.capture_payloads = capture_payloads

    @staticmethod
    def inject() -> dict[str, str]:
        """The current trace context as W3C headers (``traceparent``, ``tracestate``)."""
        return propagation.inject()

    # -- runs ----------------------------------------------------------------------------------

    @contextmanager
    def trigger_span(
        self,
        flow_id: str,
        trigger_key: str,
        origin: TriggerOrigin | None = None,
        *,
        flow_version: str = "",
        body: Any = None,
    ) -> Iterator[Span]:
        """The span of starting a run (its context is what the run stores)."""
        origin = origin or TriggerOrigin()
        parent = propagation.extract(origin.carrier)
        attributes: dict[str, Any] = {
            "floworch.flow_id": flow_id,
            "floworch.flow_version": flow_version,
            "floworch.trigger_key": trigger_key,
        }
        if self.capture_payloads and body is not None:
            attributes["floworch.trigger_body"] = _payload(body)
        with self.tracer.start_as_current_span(
            "flow.trigger", context=parent, kind=origin.span_kind, attributes=attributes
        ) as span:
            yield span

    @contextmanager
    def signal_span(
        self, flow_id: str, run_id: str, signal_name: str, run_trace: Mapping[str, str]
    ) -> Iterator[Span]:
        """The span of delivering a signal: in the run's trace, linked to the caller's span."""
        caller = trace.get_current_span().get_span_context()
        links = [Link(caller)] if caller.is_valid else []
        parent = propagation.extract(run_trace)
        with self.tracer.start_as_current_span(
            "flow.signal",
            context=parent,
            kind=SpanKind.INTERNAL if parent is not None else SpanKind.SERVER,
            links=links,
            attributes={
                "floworch.flow_id": flow_id,
                "floworch.run_id": run_id,
                "floworch.signal": signal_name,
            },
        ) as span:
            yield span

    @contextmanager
    def cron_span(self, flow_id: str, trigger_key: str, fire_time: datetime) -> Iterator[Span]:
        """The span of one cron fire time starting its run: the root of that run's trace."""
        with self.tracer.start_as_current_span(
            "flow.cron.fire",
            context=Context(),
            kind=SpanKind.CONSUMER,
            attributes={
                "floworch.flow_id": flow_id,
                "floworch.trigger_key": trigger_key,
                "floworch.fire_time": fire_time.isoformat(),
            },
        ) as span:
            yield span

    # -- messages ------------------------------------------------------------------------------

    def begin_dispatch(
        self, sends: Sequence[tuple[StepEnvelope, datetime | None]], target: MessagingTarget
    ) -> tuple[list[tuple[StepEnvelope, datetime | None]], list[Span]]:
        """Opens one ``flow.dispatch`` span per message and puts its context in the envelope.

        The parent is the span current now (the step or trigger that decided the dispatch);
        with none (the reconciler, a manual retry), the run's stored context, so the message
        stays in the run's trace.
        """
        current = trace.get_current_span().get_span_context().is_valid
        traced: list[tuple[StepEnvelope, datetime | None]] = []
        spans: list[Span] = []
        for envelope, at in sends:
            parent = None if current else propagation.extract(envelope.trace_context)
            attributes: dict[str, Any] = {
                "messaging.system": target.system,
                "messaging.destination.name": target.destination,
                "messaging.operation.type": "send",
                "messaging.operation.name": "schedule" if at is not None else "send",
                "messaging.message.id": envelope.message_id,
                "floworch.flow_id": envelope.flow_id,
                "floworch.run_id": envelope.run_id,
                "floworch.step_key": envelope.step_key,
                "floworch.step_type": envelope.step_type,
                "floworch.seq": envelope.seq,
            }
            if at is not None:
                attributes["floworch.scheduled_at"] = at.isoformat()
            span = self.tracer.start_span(
                "flow.dispatch", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
            )
            spans.append(span)
            carrier = propagation.inject(trace.set_span_in_context(span))
            traced.append((replace(envelope, trace_context=carrier or envelope.trace_context), at))
        return traced, spans

    @staticmethod
    def end_dispatch(
        sends: Sequence[tuple[StepEnvelope, datetime | None]],
        spans: Sequence[Span],
        sent: Collection[tuple[str, str, int]],
        error: BaseException | None = None,
    ) -> None:
        """Ends the dispatch spans; those whose message is not in ``sent`` failed with
        ``error`` (the transport refused them; the reconciler sends them later)."""
        for (envelope, _), span in zip(sends, spans, strict=True):
            key = (envelope.run_id, envelope.step_key, envelope.seq)
            if error is not None and key not in sent:
                span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
            span.end()

    @contextmanager
    def step_span(self, envelope: StepEnvelope, attributes: Mapping[str, Any]) -> Iterator[Span]:
        """The span of one step execution, a child of the dispatch whose message this is."""
        parent = propagation.extract(envelope.trace_context)
        with self.tracer.start_as_current_span(
            "flow.step",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.operation.type": "process",
                "messaging.message.id": envelope.message_id,
                "floworch.step_path": step_template(envelope.step_key),
                **attributes,
            },
        ) as span:
            yield span

    def finish_span(
        self, span: Span, status: str, error: Mapping[str, Any] | None, output: Any = None
    ) -> None:
        """Records the step's status (and error) on its span."""
        span.set_attribute("floworch.status", status)
        if self.capture_payloads and output is not None:
            span.set_attribute("floworch.output", _payload(output))
        if error:
            span.set_attribute("floworch.error_type", str(error.get("type", "")))
            span.set_status(Status(StatusCode.ERROR, str(error.get("message", ""))[:1000]))

    # -- metrics -------------------------------------------------------------------------------

    def record_step(
        self, flow_id: str, step_key: str, step_type: str, status: str, seconds: float
    ) -> None:
        """The duration of one step execution."""
        self.metrics.step_duration.record(
            max(seconds, 0.0),
            {
                FLOW: flow_id,
                STEP: step_template(step_key),
                "floworch.step_type": step_type,
                "floworch.status": str(status),
            },
        )

    def record_queue_delay(self, flow_id: str, step_key: str, seconds: float) -> None:
        self.metrics.queue_delay.record(
            max(seconds, 0.0), {FLOW: flow_id, STEP: step_template(step_key)}
        )

    def claim_conflict(self, flow_id: str, outcome: str) -> None:
        """A step message dropped at the claim (a duplicate, or a stale dispatch)."""
        self.metrics.claim_conflicts.add(1, {FLOW: flow_id, "floworch.outcome": outcome})

    def dead_lettered(self, reason: str, entity: str) -> None:
        """A message set aside as poison (any runtime)."""
        self.metrics.dead_letters.add(1, {REASON: reason, "messaging.destination.name": entity})

    def reconciled(self, resent: int, redispatched: int, taken_over: int, timed_out: int) -> None:
        """What one reconciler pass did."""
        for action, count in (
            ("resent", resent),
            ("redispatched", redispatched),
            ("taken_over", taken_over),
            ("timed_out", timed_out),
        ):
            if count:
                self.metrics.reconciler.add(count, {"floworch.action": action})

    def signal_waited(self, flow_id: str, step_key: str, seconds: float) -> None:
        self.metrics.signal_wait.record(
            max(seconds, 0.0), {FLOW: flow_id, STEP: step_template(step_key)}
        )

    def cron_fired(self, flow_id: str, trigger_key: str, lag_seconds: float) -> None:
        self.metrics.cron_lag.record(
            max(lag_seconds, 0.0), {FLOW: flow_id, "floworch.trigger_key": trigger_key}
        )

    def observe_events(self, flow_id: str, events: Sequence[Any]) -> None:
        """Counts runs started/finished, steps finished, retries, skips and polls from a
        transition's events."""
        if events:
            self.metrics.observe_events(flow_id, events)


def _payload(value: Any) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text[:_PAYLOAD_LIMIT]
