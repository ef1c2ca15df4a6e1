"""Planning and applying against the in-memory namespace: creation, idempotence, drift, rules,
conflicts and extras."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta

import pytest

from floworch.runtime.servicebus.topology import (
    Action,
    CorrelationFilterSpec,
    ExtraEntity,
    InMemoryNamespace,
    Kind,
    QueueSpec,
    RuleSpec,
    SqlFilterSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    TopologyConflictError,
    apply_topology,
    ensure_topology,
    plan_to_json,
    plan_topology,
    render_plan_text,
)
from floworch.runtime.servicebus.topology.desired import flow_rule

STEPS = "flow-steps"


def topology(*flow_ids: str) -> Topology:
    subs = tuple(
        SubscriptionSpec(
            name=f"flow-{i}",
            lock_duration=timedelta(minutes=1),
            max_delivery_count=10,
            rules=(flow_rule(i),),
        )
        for i in flow_ids
    )
    return Topology(
        topics=(TopicSpec(name=STEPS, requires_duplicate_detection=True, subscriptions=subs),),
        queues=(
            QueueSpec(name="flow-cron", requires_duplicate_detection=True, max_delivery_count=10),
        ),
    )


def actions(plan_changes: object) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.path) for c in plan_changes]  # type: ignore[attr-defined]


def test_an_empty_namespace_gets_everything_and_new_subscriptions_lose_default() -> None:
    ns = InMemoryNamespace()
    plan = apply_topology(ns, topology("a"))
    assert actions(plan.changes) == [
        (Action.CREATE, Kind.QUEUE, "flow-cron"),
        (Action.CREATE, Kind.TOPIC, STEPS),
        (Action.CREATE, Kind.SUBSCRIPTION, f"{STEPS}/subscriptions/flow-a"),
        (Action.ADD, Kind.RULE, f"{STEPS}/subscriptions/flow-a/rules/flow"),
        (Action.REMOVE, Kind.RULE, f"{STEPS}/subscriptions/flow-a/rules/$Default"),
    ]
    assert ns.list_rules(STEPS, "flow-a") == [flow_rule("a")]
    assert ns.list_queues()[0].requires_duplicate_detection is True


def test_a_second_apply_changes_nothing() -> None:
    ns = InMemoryNamespace()
    apply_topology(ns, topology("a", "b"))
    made = list(ns.operations)
    again = apply_topology(ns, topology("a", "b"))
    assert not again.pending
    assert again.summary() == "no changes"
    assert ns.operations == made


def test_drift_in_settings_is_an_update_naming_each_field() -> None:
    ns = InMemoryNamespace()
    apply_topology(ns, topology("a"))
    ns.update_subscription(STEPS, SubscriptionSpec(name="flow-a", max_delivery_count=3))
    ns.update_queue(QueueSpec(name="flow-cron", max_delivery_count=1))
    plan = plan_topology(ns, topology("a"))
    assert actions(plan.changes) == [
        (Action.UPDATE, Kind.QUEUE, "flow-cron"),
        (Action.UPDATE, Kind.SUBSCRIPTION, f"{STEPS}/subscriptions/flow-a"),
    ]
    (field,) = plan.changes[1].fields
    assert (field.name, field.current, field.wanted) == ("maxDeliveryCount", 3, 10)
    assert "maxDeliveryCount: 3 -> 10" in render_plan_text(plan)
    apply_topology(ns, topology("a"))
    assert ns.list_subscriptions(STEPS)[0].max_delivery_count == 10
    assert not plan_topology(ns, topology("a")).pending


def test_rules_are_added_replaced_and_removed_adds_first() -> None:
    ns = InMemoryNamespace()
    apply_topology(ns, topology("a", "b"))
    ns.delete_rule(STEPS, "flow-a", "flow")
    ns.create_rule(STEPS, "flow-a", RuleSpec(name="$Default"))
    ns.update_rule(STEPS, "flow-b", RuleSpec(name="flow", filter=SqlFilterSpec("FlowId = 'b'")))
    plan = plan_topology(ns, topology("a", "b"))
    assert actions(plan.changes) == [
        (Action.ADD, Kind.RULE, f"{STEPS}/subscriptions/flow-a/rules/flow"),
        (Action.REPLACE, Kind.RULE, f"{STEPS}/subscriptions/flow-b/rules/flow"),
        (Action.REMOVE, Kind.RULE, f"{STEPS}/subscriptions/flow-a/rules/$Default"),
    ]
    replaced = plan.changes[1]
    assert [f.name for f in replaced.fields] == ["filter"]
    text = render_plan_text(plan)
    assert """filter: SQL "FlowId = 'b'" -> correlation FlowId = "b\"""" in text
    assert "the match-all rule would deliver every flow's steps" in text
    apply_topology(ns, topology("a", "b"))
    assert ns.list_rules(STEPS, "flow-a") == [flow_rule("a")]
    assert ns.list_rules(STEPS, "flow-b") == [flow_rule("b")]


def test_settings_service_bus_cannot_change_are_conflicts_and_block_apply() -> None:
    ns = InMemoryNamespace()
    ns.create_queue(QueueSpec(name="flow-cron", max_delivery_count=2))  # no duplicate detection
    plan = plan_topology(ns, topology("a"))
    update, conflict = plan.changes[0], plan.changes[1]
    assert (update.action, [f.name for f in update.fields]) == (Action.UPDATE, ["maxDeliveryCount"])
    assert conflict.action is Action.CONFLICT
    assert [(f.name, f.current, f.wanted) for f in conflict.fields] == [
        ("requiresDuplicateDetection", False, True)
    ]
    before = list(ns.operations)
    with pytest.raises(TopologyConflictError) as caught:
        apply_topology(ns, topology("a"))
    assert caught.value.paths == ("flow-cron",)
    assert "requiresDuplicateDetection: false -> true" in str(caught.value)
    assert "nothing was changed" in str(caught.value)
    assert ns.operations == before


def test_a_queue_with_the_topics_name_is_a_conflict() -> None:
    ns = InMemoryNamespace()
    ns.create_queue(QueueSpec(name="FLOW-STEPS"))
    plan = plan_topology(ns, topology("a"))
    assert (plan.changes[1].action, plan.changes[1].kind) == (Action.CONFLICT, Kind.TOPIC)
    assert "share one name space" in (plan.changes[1].note or "")


def test_extra_entities_are_listed_and_never_deleted() -> None:
    ns = InMemoryNamespace()
    apply_topology(ns, topology("a", "gone"))
    ns.create_queue(QueueSpec(name="legacy"))
    ns.create_topic(TopicSpec(name="events"))
    plan = apply_topology(ns, topology("a"))
    assert not plan.pending
    assert plan.extras == (
        ExtraEntity(Kind.QUEUE, "legacy"),
        ExtraEntity(Kind.TOPIC, "events"),
        ExtraEntity(Kind.SUBSCRIPTION, f"{STEPS}/subscriptions/flow-gone"),
    )
    assert [s.name for s in ns.list_subscriptions(STEPS)] == ["flow-a", "flow-gone"]
    assert "Left alone" in render_plan_text(plan)


def test_unmanaged_settings_are_not_compared() -> None:
    ns = InMemoryNamespace()
    apply_topology(ns, topology("a"))
    ns.update_queue(QueueSpec(name="flow-cron", lock_duration=timedelta(minutes=5)))
    assert not plan_topology(ns, topology("a")).pending


def test_names_compare_case_insensitively() -> None:
    ns = InMemoryNamespace()
    apply_topology(ns, topology("a"))
    shouting = Topology(
        topics=(replace(topology("a").topics[0], name="FLOW-STEPS"),),
        queues=(replace(topology("a").queues[0], name="Flow-Cron"),),
    )
    assert not plan_topology(ns, shouting).pending


def test_json_plan_names_fields_with_current_and_wanted() -> None:
    ns = InMemoryNamespace()
    apply_topology(ns, topology("a"))
    ns.update_subscription(
        STEPS, SubscriptionSpec(name="flow-a", lock_duration=timedelta(seconds=30))
    )
    data = plan_to_json(plan_topology(ns, topology("a")))
    json.dumps(data)  # serialisable
    assert data["pending"] is True
    assert data["changes"] == [
        {
            "action": "update",
            "kind": "subscription",
            "path": f"{STEPS}/subscriptions/flow-a",
            "fields": [{"name": "lockDuration", "current": "PT30S", "wanted": "PT1M"}],
        }
    ]
    assert data["capacity"][0]["operationsPerStep"] == 4


def test_ensure_topology_applies_from_async_code() -> None:
    ns = InMemoryNamespace()
    plan = asyncio.run(ensure_topology(ns, topology("a")))
    assert plan.count(Action.CREATE) == 3
    assert not plan_topology(ns, topology("a")).pending


def test_a_rule_created_meanwhile_is_updated_not_failed() -> None:
    class Racing(InMemoryNamespace):
        """Someone else creates the rule between plan and apply."""

        def create_rule(self, topic: str, subscription: str, rule: RuleSpec) -> None:
            if rule.name == "flow" and not any(
                r.name == "flow" for r in self.list_rules(topic, subscription)
            ):
                other = RuleSpec(name="flow", filter=CorrelationFilterSpec(properties={"x": "y"}))
                super().create_rule(topic, subscription, other)
            super().create_rule(topic, subscription, rule)

    ns = Racing()
    apply_topology(ns, topology("a"))
    assert ns.list_rules(STEPS, "flow-a") == [flow_rule("a")]
