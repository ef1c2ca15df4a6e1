"""W3C trace context in carriers: step envelopes, Service Bus application properties, HTTP
headers.

A step message carries its trace context twice: in the envelope (``traceContext``, what floworch
reads first) and as application properties ``traceparent``, ``tracestate`` and ``Diagnostic-Id``
(what the Functions host, the Azure SDK and other Service Bus consumers read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DIAGNOSTIC_ID = "Diagnostic-Id"
"""The Azure SDK's older name for the same W3C value; written for consumers that read only it."""


def inject(context: Context | None = None) -> dict[str, str]:
    """The trace context (current, or ``context``) as W3C headers; empty when there is none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def extract(carrier: Mapping[str, str]) -> Context | None:
    """The remote parent a carrier names, or None when it names no valid span."""
    if not carrier.get(TRACEPARENT):
        return None
    context = propagate.extract(dict(carrier))
    span_context = trace.get_current_span(context).get_span_context()
    return context if span_context.is_valid else None


def span_context_of(carrier: Mapping[str, str]) -> SpanContext | None:
    """The span a carrier names (for links), or None."""
    context = extract(carrier)
    if context is None:
        return None
    return trace.get_current_span(context).get_span_context()


def message_properties(trace_context: Mapping[str, str]) -> dict[str, str]:
    """Application properties for a message: ``traceparent``, ``tracestate``, ``Diagnostic-Id``."""
    properties: dict[str, str] = {}
    parent = trace_context.get(TRACEPARENT)
    if parent:
        properties[TRACEPARENT] = parent
        properties[DIAGNOSTIC_ID] = parent
    state = trace_context.get(TRACESTATE)
    if state:
        properties[TRACESTATE] = state
    return properties


def carrier_from_properties(properties: Mapping[Any, Any] | None) -> dict[str, str]:
    """The W3C carrier in received application properties (keys and values may be bytes):
    ``traceparent`` first, else ``Diagnostic-Id`` when it holds a W3C value (as the Azure SDK
    reads them)."""
    found: dict[str, str] = {}
    for key, value in (properties or {}).items():
        name = key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)
        if name.lower() in (TRACEPARENT, TRACESTATE, DIAGNOSTIC_ID.lower()) and value:
            found[name.lower()] = (
                value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            )
    carrier: dict[str, str] = {}
    parent = found.get(TRACEPARENT) or found.get(DIAGNOSTIC_ID.lower())
    if parent and parent.count("-") == 3:
        carrier[TRACEPARENT] = parent
        if found.get(TRACESTATE):
            carrier[TRACESTATE] = found[TRACESTATE]
    return carrier
