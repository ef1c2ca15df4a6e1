"""Capacity figures and warnings: subscriptions per topic, operations per step, SQL filters that
a correlation filter would replace, match-all subscriptions left on the steps topic."""

from __future__ import annotations

import pytest

from floworch.runtime.servicebus.topology import (
    MAX_SUBSCRIPTIONS_PER_TOPIC,
    CorrelationFilterSpec,
    InMemoryNamespace,
    RuleSpec,
    SqlFilterSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    apply_topology,
    correlation_equivalent,
    plan_topology,
    render_plan_text,
)
from floworch.runtime.servicebus.topology.desired import flow_rule


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("Region = 'eu'", CorrelationFilterSpec(properties={"Region": "eu"})),
        ("user.Region='eu'", CorrelationFilterSpec(properties={"Region": "eu"})),
        ("([Flow Id] = 'it''s')", CorrelationFilterSpec(properties={"Flow Id": "it's"})),
        (
            "sys.Label = 'order' AND priority = 3 and urgent = TRUE",
            CorrelationFilterSpec(subject="order", properties={"priority": 3, "urgent": True}),
        ),
        ("sys.CorrelationId = 'c-1'", CorrelationFilterSpec(correlation_id="c-1")),
        ("amount = 2.5", CorrelationFilterSpec(properties={"amount": 2.5})),
    ],
)
def test_equalities_joined_by_and_have_a_correlation_equivalent(
    sql: str, expected: CorrelationFilterSpec
) -> None:
    assert correlation_equivalent(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "Region = 'eu' OR Region = 'us'",
        "amount > 100",
        "Region <> 'eu'",
        "NOT Region = 'eu'",
        "Region LIKE 'e%'",
        "Region = 'eu' AND Region = 'us'",
        "sys.EnqueuedTimeUtc = '2020-01-01'",
        "sys.Label = 3",
        "Region IN ('eu')",
        "EXISTS(Region)",
        "a = b",
        "1=1",
        "Region = 'eu' AND",
    ],
)
def test_other_sql_has_no_correlation_equivalent(sql: str) -> None:
    assert correlation_equivalent(sql) is None


def steps(*subs: SubscriptionSpec) -> Topology:
    return Topology(topics=(TopicSpec(name="flow-steps", subscriptions=subs),))


def test_operations_per_step_count_every_subscription_of_the_topic() -> None:
    ns = InMemoryNamespace()
    ns.create_topic(TopicSpec(name="flow-steps"))
    ns.create_subscription("flow-steps", SubscriptionSpec(name="audit"))
    wanted = steps(*(SubscriptionSpec(name=f"flow-{i}", rules=(flow_rule(i),)) for i in "abc"))
    plan = plan_topology(ns, wanted)
    (capacity,) = plan.capacity
    assert (capacity.subscriptions, capacity.operations_per_step) == (4, 7)
    text = render_plan_text(plan)
    assert "1 send + 1 receive + 1 complete + 4 filter evaluations" in text
    assert "= 7 operations per message" in text
    assert "Standard tier bills per million operations" in text
    assert "$" not in text.split("Capacity:")[1].split("Warnings:")[0]  # no invented prices


def test_more_subscriptions_than_service_bus_allows_is_a_warning() -> None:
    many = tuple(
        SubscriptionSpec(name=f"flow-{i}", rules=(flow_rule(str(i)),))
        for i in range(MAX_SUBSCRIPTIONS_PER_TOPIC + 1)
    )
    plan = plan_topology(InMemoryNamespace(), steps(*many))
    assert any("2,001 subscriptions" in w and "allows 2,000" in w for w in plan.warnings)
    fewer = plan_topology(InMemoryNamespace(), steps(*many[:-1]))
    assert not any("subscriptions;" in w for w in fewer.warnings)


def test_sql_filters_a_correlation_filter_would_do_are_flagged() -> None:
    sub = SubscriptionSpec(
        name="flow-a", rules=(RuleSpec(name="flow", filter=SqlFilterSpec("FlowId = 'a'")),)
    )
    ns = InMemoryNamespace()
    ns.create_topic(TopicSpec(name="flow-steps"))
    ns.create_subscription("flow-steps", SubscriptionSpec(name="reporting"))
    ns.delete_rule("flow-steps", "reporting", "$Default")
    ns.create_rule(
        "flow-steps", "reporting", RuleSpec(name="eu", filter=SqlFilterSpec("sys.To = 'eu'"))
    )
    ns.create_rule(
        "flow-steps", "reporting", RuleSpec(name="big", filter=SqlFilterSpec("amount > 10"))
    )
    warnings = plan_topology(ns, steps(sub)).warnings
    flagged = [w for w in warnings if "SQL filter" in w]
    assert len(flagged) == 2
    assert "flow-steps/subscriptions/flow-a/rules/flow" in flagged[0]
    assert '{"properties": {"FlowId": "a"}}' in flagged[0]
    assert "flow-steps/subscriptions/reporting/rules/eu" in flagged[1]
    assert '{"to": "eu"}' in flagged[1]


def test_a_match_all_subscription_left_on_the_topic_is_a_warning() -> None:
    ns = InMemoryNamespace()
    wanted = steps(SubscriptionSpec(name="flow-a", rules=(flow_rule("a"),)))
    apply_topology(ns, wanted)
    assert apply_topology(ns, wanted).warnings == ()
    ns.create_subscription("flow-steps", SubscriptionSpec(name="debug"))
    (warning,) = plan_topology(ns, wanted).warnings
    assert "flow-steps/subscriptions/debug" in warning
    assert "copy of every step message" in warning
