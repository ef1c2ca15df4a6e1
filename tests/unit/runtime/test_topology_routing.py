"""Routing by FlowId and the triggers topic's catch-all (issue 9.4)."""

from __future__ import annotations

from dataclasses import replace

from floworch.runtime.servicebus.topology import (
    CorrelationFilterSpec,
    InMemoryNamespace,
    RuleSpec,
    SqlFilterSpec,
    TopologySettings,
    apply_topology,
    desired_topology,
    plan_topology,
)
from floworch.runtime.servicebus.topology.routing import (
    MAX_SQL_FILTER_LENGTH,
    NO_FLOW_ID_SQL,
    routed_flow_id,
    unrouted_sql,
)
from tests.unit.runtime.test_topology_desired import flow


def test_the_catch_all_lists_every_routed_flow_quoted() -> None:
    assert unrouted_sql(["b", "a", "o'k", "a"]) == (
        "NOT EXISTS(FlowId) OR FlowId NOT IN ('a', 'b', 'o''k')"
    )
    assert RuleSpec(name="x", filter=SqlFilterSpec(unrouted_sql([]))).filter == (
        RuleSpec(name="x").filter
    )  # no flow: everything is unrouted


def test_a_catch_all_too_long_for_service_bus_keeps_only_the_missing_flow_id_case() -> None:
    ids = [f"flow-{i:04d}-with-a-long-name" for i in range(60)]
    assert unrouted_sql(ids) == NO_FLOW_ID_SQL
    plan = plan_topology(InMemoryNamespace(), desired_topology([flow(i) for i in ids]))
    assert any("do not fit in one SQL filter" in w for w in plan.warnings), plan.warnings
    fits = [f"f{i}" for i in range(100)]
    assert len(unrouted_sql(fits)) <= MAX_SQL_FILTER_LENGTH
    assert unrouted_sql(fits) != NO_FLOW_ID_SQL


def test_only_a_lone_flow_id_correlation_rule_is_a_route() -> None:
    route = RuleSpec(name="any", filter=CorrelationFilterSpec(properties={"FlowId": "a"}))
    assert routed_flow_id([route]) == "a"
    assert routed_flow_id([route, route]) is None
    assert routed_flow_id([replace(route, action="SET x = 1")]) is None
    other = CorrelationFilterSpec(properties={"FlowId": "a", "Region": "eu"})
    assert routed_flow_id([RuleSpec(name="r", filter=other)]) is None
    labelled = CorrelationFilterSpec(subject="s", properties={"FlowId": "a"})
    assert routed_flow_id([RuleSpec(name="r", filter=labelled)]) is None


def test_deployments_of_different_flows_sharing_a_namespace_keep_each_others_routes() -> None:
    # Two workers with --auto-create-topology, each applying its own flows: the catch-all must
    # not start catching the other's triggers (they would be dead-lettered as UnknownFlow).
    namespace = InMemoryNamespace()
    apply_topology(namespace, desired_topology([flow("a")]))
    apply_topology(namespace, desired_topology([flow("b")]))
    rules = namespace.list_rules("flow-triggers", "unrouted")
    assert [r.filter for r in rules] == [
        SqlFilterSpec("NOT EXISTS(FlowId) OR FlowId NOT IN ('a', 'b')")
    ]
    again = plan_topology(namespace, desired_topology([flow("a")]))
    assert not again.pending, again.changes
    custom = TopologySettings(triggers_topic="in")
    assert plan_topology(namespace, desired_topology([flow("a")], custom)).pending
