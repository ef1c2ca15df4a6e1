"""The topology the registered flows need (desired_topology) and TopologySettings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from floworch.engine.flows import FlowRegistry
from floworch.model import FlowManifest, ServiceBusTrigger
from floworch.runtime.servicebus.names import MAX_SUBSCRIPTION_NAME, subscription_name
from floworch.runtime.servicebus.topology import (
    CorrelationFilterSpec,
    RuleSpec,
    SqlFilterSpec,
    TopologyDocumentError,
    TopologyError,
    TopologySettings,
    desired_topology,
)


def flow(flow_id: str, **triggers: dict[str, Any]) -> FlowManifest:
    return FlowManifest.model_validate(
        {
            "id": flow_id,
            "version": "1",
            "triggers": triggers or {"manual": {"type": "Manual"}},
            "steps": {"only": {"type": "Work"}},
        }
    )


def test_steps_topic_has_one_subscription_per_flow_with_a_flow_id_rule() -> None:
    topology = desired_topology(FlowRegistry([flow("orders"), flow("billing")]))
    topic, _ = topology.topics
    assert topic.name == "flow-steps"
    assert topic.requires_duplicate_detection is True
    assert topic.duplicate_detection_history_time_window == timedelta(minutes=10)
    assert [s.name for s in topic.subscriptions] == ["flow-billing", "flow-orders"]
    orders = topic.subscriptions[1]
    assert orders.rules == (
        RuleSpec(name="flow", filter=CorrelationFilterSpec(properties={"FlowId": "orders"})),
    )
    assert orders.lock_duration == timedelta(minutes=1)
    assert orders.max_delivery_count == 10
    assert orders.dead_lettering_on_message_expiration is True
    assert orders.default_message_ttl is None  # left to Service Bus unless given


def test_the_cron_queue_has_duplicate_detection() -> None:
    topology = desired_topology([flow("a")])
    assert [q.name for q in topology.queues] == ["flow-cron"]
    for queue in topology.queues:
        assert queue.requires_duplicate_detection is True
        assert queue.duplicate_detection_history_time_window == timedelta(minutes=10)
        assert queue.requires_session is False


def test_the_triggers_topic_routes_each_flow_and_catches_the_rest() -> None:
    # Issue 9.4: trigger messages reach only the workers that run their flow, and what no
    # flow routes lands in "unrouted" instead of being dropped by Service Bus.
    topology = desired_topology([flow("orders"), flow("billing")])
    steps, triggers = topology.topics
    assert triggers.name == "flow-triggers"
    assert triggers.requires_duplicate_detection is True
    names = [s.name for s in triggers.subscriptions]
    assert names == ["flow-billing", "flow-orders", "unrouted"]
    assert triggers.subscriptions[:2] == steps.subscriptions  # the same routes as the steps
    (catch_all,) = triggers.subscriptions[2].rules
    assert catch_all.name == "unrouted"
    assert catch_all.filter == SqlFilterSpec(
        "NOT EXISTS(FlowId) OR FlowId NOT IN ('billing', 'orders')"
    )
    assert triggers.subscriptions[2].max_delivery_count == 10


def test_long_flow_ids_get_distinct_subscription_names_within_the_limit() -> None:
    base = "a-very-long-flow-identifier-that-goes-on-and-on-and-on"
    ids = [f"{base}-one", f"{base}-two", "z" * 100]  # 100: the longest flow id
    topology = desired_topology([flow(i) for i in ids])
    names = [s.name for s in topology.topics[0].subscriptions]
    assert all(len(n) <= MAX_SUBSCRIPTION_NAME for n in names)
    assert len({n.casefold() for n in names}) == 3
    by_flow = {
        s.rules[0].filter.properties["FlowId"]: s.name  # type: ignore[union-attr]
        for s in topology.topics[0].subscriptions
    }
    assert by_flow == {i: subscription_name(i) for i in ids}


def test_service_bus_trigger_queues_are_added_once() -> None:
    flows = [
        flow("a", incoming={"type": "ServiceBus", "queue": "orders-in"}),
        flow("b", again={"type": "ServiceBus", "queue": "ORDERS-IN"}, other={"type": "ServiceBus"}),
        flow("c", own={"type": "ServiceBus", "queue": "flow-triggers"}),
    ]
    topology = desired_topology(flows)
    names = [q.name for q in topology.queues]
    assert names == ["flow-cron", "orders-in"]  # "flow-triggers" is the triggers topic
    extra = topology.queue("orders-in")
    assert extra is not None
    # A queue a flow listens on may pre-exist with its senders: duplicate detection (which
    # cannot change later) is not imposed, but peek-lock settings are.
    assert extra.requires_duplicate_detection is None
    assert extra.max_delivery_count == 10


def test_trigger_queue_problems_are_all_reported_with_their_path() -> None:
    # Manifest validation refuses "-nope-" already; a manifest built without it reaches here.
    unchecked = ServiceBusTrigger.model_construct(type="ServiceBus", queue="-nope-")
    flows = [
        flow("a").model_copy(update={"triggers": {"bad": unchecked}}),
        flow("b", cron={"type": "ServiceBus", "queue": "Flow-Cron"}),
        flow("c", topic={"type": "ServiceBus", "queue": "flow-steps"}),
    ]
    with pytest.raises(TopologyDocumentError) as caught:
        desired_topology(flows)
    paths = [issue.path for issue in caught.value.issues]
    assert paths == [
        "flows.a.triggers.bad.queue",
        "flows.b.triggers.cron.queue",
        "flows.c.triggers.topic.queue",
    ]
    assert "the cron queue" in str(caught.value)
    assert "the steps topic" in str(caught.value)


def test_flows_whose_subscriptions_differ_only_in_case_are_rejected() -> None:
    with pytest.raises(TopologyDocumentError, match="clashes with that of flow 'Orders'"):
        desired_topology([flow("orders"), flow("Orders")])


def test_settings_shape_every_entity() -> None:
    settings = TopologySettings(
        steps_topic="steps",
        cron_queue="cron",
        triggers_topic="in",
        lock_duration=timedelta(seconds=30),
        max_delivery_count=4,
        default_message_ttl=timedelta(days=7),
        duplicate_detection_window=timedelta(hours=1),
        dead_lettering_on_message_expiration=False,
    )
    topology = desired_topology([flow("a")], settings)
    topic = topology.topics[0]
    assert topic.name == "steps"
    assert topic.default_message_ttl == timedelta(days=7)
    assert topic.duplicate_detection_history_time_window == timedelta(hours=1)
    sub = topic.subscriptions[0]
    assert (sub.lock_duration, sub.max_delivery_count) == (timedelta(seconds=30), 4)
    assert sub.dead_lettering_on_message_expiration is False
    assert [q.name for q in topology.queues] == ["cron"]
    assert [t.name for t in topology.topics] == ["steps", "in"]
    assert all(q.default_message_ttl == timedelta(days=7) for q in topology.queues)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lock_duration": timedelta(minutes=6)}, "lock_duration"),
        ({"max_delivery_count": 0}, "max_delivery_count"),
        ({"duplicate_detection_window": timedelta(seconds=5)}, "duplicate_detection_window"),
        ({"default_message_ttl": timedelta(0)}, "default_message_ttl"),
        ({"steps_topic": ""}, "steps_topic"),
    ],
)
def test_settings_outside_service_bus_limits_are_rejected(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TopologyError, match=message):
        TopologySettings(**options)


def test_invalid_entity_names_in_settings_are_reported() -> None:
    with pytest.raises(TopologyDocumentError, match=r"TopologySettings\.steps_topic"):
        desired_topology([flow("a")], TopologySettings(steps_topic="bad name"))
    with pytest.raises(TopologyDocumentError, match="is also the steps topic"):
        desired_topology([flow("a")], TopologySettings(triggers_topic="FLOW-STEPS"))
