"""The Service Bus message contract of step messages (see docs/servicebus.md).

``MessageId`` is ``<runId>:<stepKey>:<seq>``: ``seq`` is the step's dispatch number (every retry,
poll, delay wake-up and take-over gets a new one), so duplicate detection drops re-sends of one
dispatch but never a later dispatch of the same attempt. ``Subject`` is the step key. Application
properties carry ``FlowId`` (the subscription's correlation filter matches it), ``RunId``,
``StepKey``, ``Attempt`` (the dispatch number, as in the message id) and the W3C trace context.
The body is the JSON envelope (version field ``v``); run data stays in SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage

from floworch.engine.envelope import StepEnvelope
from floworch.errors import EnvelopeError
from floworch.telemetry.propagation import message_properties

CONTENT_TYPE = "application/json"
TRACE_HEADERS = ("traceparent", "tracestate", "Diagnostic-Id")


def step_message(envelope: StepEnvelope, at: datetime | None = None) -> ServiceBusMessage:
    """The Service Bus message of one step dispatch (``at``: scheduled enqueue time)."""
    properties: dict[str | bytes, Any] = {
        "FlowId": envelope.flow_id,
        "RunId": envelope.run_id,
        "StepKey": envelope.step_key,
        "Attempt": envelope.seq,
    }
    # traceparent, tracestate and Diagnostic-Id (the Azure SDK's name), as consumers outside
    # floworch (the Functions host, the SDK) read them; floworch reads the envelope's copy.
    properties.update(message_properties(envelope.trace_context))
    return ServiceBusMessage(
        envelope.to_json(),
        message_id=envelope.message_id,
        subject=envelope.step_key,
        content_type=CONTENT_TYPE,
        application_properties=properties,
        scheduled_enqueue_time_utc=at,
    )


def body_bytes(message: ServiceBusReceivedMessage) -> bytes:
    """The raw body of a received message (data sections joined; a value body as UTF-8 JSON)."""
    body = message.body
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    try:
        return b"".join(bytes(part) for part in body)
    except TypeError as exc:
        raise EnvelopeError(
            f"message {message.message_id} has a body of type {type(body).__name__}, not JSON data"
        ) from exc


def envelope_of(message: ServiceBusReceivedMessage) -> StepEnvelope:
    """Parses a received step message.

    Raises:
        EnvelopeError: the body is not a step envelope this floworch reads.
    """
    return StepEnvelope.from_json(body_bytes(message))


def application_property(message: ServiceBusReceivedMessage, name: str) -> str | None:
    """An application property as text (keys and values may arrive as bytes)."""
    props = message.application_properties or {}
    for key, value in props.items():
        text_key = key.decode() if isinstance(key, bytes) else str(key)
        if text_key == name:
            if value is None:
                return None
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
