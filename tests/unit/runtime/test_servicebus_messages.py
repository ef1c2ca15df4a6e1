"""The Service Bus message contract, checked without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from floworch.engine.envelope import StepEnvelope
from floworch.runtime.servicebus.config import ServiceBusConnection, ServiceBusSettings
from floworch.runtime.servicebus.cron import CronTick
from floworch.runtime.servicebus.messages import step_message
from floworch.runtime.servicebus.names import subscription_name
from floworch.runtime.servicebus.triggers import trigger_message

TRACE = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "congo=t61rcWkgMzE",
}


def test_step_message_carries_the_contract() -> None:
    envelope = StepEnvelope(
        "orders", "r1", "each.2.charge", "Charge", 4, flow_version="3", trace_context=TRACE
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    message = step_message(envelope, at)
    assert message.message_id == "r1:each.2.charge:4"
    assert message.subject == "each.2.charge"
    assert message.content_type == "application/json"
    assert message.scheduled_enqueue_time_utc == at
    assert message.application_properties == {
        "FlowId": "orders",
        "RunId": "r1",
        "StepKey": "each.2.charge",
        "Attempt": 4,
        **TRACE,
        "Diagnostic-Id": TRACE["traceparent"],  # the Azure SDK's name of the same value
    }
    body = json.loads(str(message))
    assert body["v"] == 1 and StepEnvelope.from_dict(body) == envelope


def test_step_message_without_trace_context_has_no_trace_properties() -> None:
    message = step_message(StepEnvelope("f", "r", "a", "T", 1))
    assert message.application_properties is not None
    assert "traceparent" not in message.application_properties


def test_subscription_names_respect_service_bus_limits() -> None:
    assert subscription_name("order-fulfilment") == "flow-order-fulfilment"
    long_a = subscription_name("x" * 80 + "a")
    long_b = subscription_name("x" * 80 + "b")
    assert len(long_a) == 50 and len(long_b) == 50 and long_a != long_b
    odd = subscription_name("team/flow one")
    assert odd.startswith("flow-team-flow-one-") and odd != subscription_name("team-flow-one")


def test_cron_tick_message_id_and_body() -> None:
    tick = CronTick("f", "nightly", datetime(2026, 3, 1, 2, 0, tzinfo=UTC), "0 2 * * *")
    message = tick.to_message()
    assert message.message_id == "f:nightly:2026-03-01T02:00:00+00:00"
    body = json.loads(str(message))
    assert body == {
        "v": 1,
        "flowId": "f",
        "triggerKey": "nightly",
        "fireTime": "2026-03-01T02:00:00+00:00",
        "cron": "0 2 * * *",
    }


def test_trigger_message_defaults_and_reserved_headers() -> None:
    message = trigger_message("orders", {"orderId": 7}, headers={"X-Source": "erp"})
    props = message.application_properties or {}
    assert props["FlowId"] == "orders" and props["X-Source"] == "erp"
    assert props["IdempotencyKey"] == message.message_id
    keyed = trigger_message("orders", None, idempotency_key="k", trigger_key="bus")
    assert keyed.message_id == "k" and (keyed.application_properties or {})["TriggerKey"] == "bus"
    with pytest.raises(ValueError, match="reserved"):
        trigger_message("orders", None, headers={"FlowId": "other"})


def test_connection_needs_exactly_one_way_in_and_hides_secrets() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ServiceBusConnection()
    with pytest.raises(ValueError, match="exactly one"):
        ServiceBusConnection(connection_string="Endpoint=sb://x/;", namespace="x")
    conn = ServiceBusConnection(
        connection_string="Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;"
        "SharedAccessKey=secret"
    )
    assert conn.describe() == "sb://ns.servicebus.windows.net/"
    assert "DefaultAzureCredential" in ServiceBusConnection(namespace="ns").describe()


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ServiceBusSettings(concurrency=0)
    with pytest.raises(ValueError, match="prefetch"):
        ServiceBusSettings(prefetch=-1)


def test_a_trigger_body_with_nan_or_infinity_is_refused_before_sending() -> None:
    # Issue 16.11: json.dumps wrote NaN, which no worker could read as JSON.
    from floworch.runtime.servicebus.triggers import trigger_message

    for body in ({"x": float("nan")}, [float("inf")]):
        with pytest.raises(ValueError, match="trigger body of 'orders' is not JSON"):
            trigger_message("orders", body)
    assert b"".join(trigger_message("orders", {"x": 1.5}).body) == b'{"x":1.5}'
