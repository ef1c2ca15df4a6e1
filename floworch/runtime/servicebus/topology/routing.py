"""Routing by ``FlowId`` on a topic, and the catch-all for what no route takes.

The steps topic and the triggers topic both route by the application property ``FlowId``: each
flow has a subscription ``flow-<flowId>`` whose one rule is a correlation filter on it. Service
Bus drops a message that no subscription's rule matches, so the triggers topic also has the
subscription ``unrouted``, whose SQL filter matches exactly what no flow's subscription takes
(no ``FlowId``, or one no subscription routes): a worker dead-letters those with a reason, and
nothing sent to the triggers topic is lost without a trace.

The catch-all has to name every routed flow. Several deployments may share one namespace, each
applying the topology of its own flows, so :func:`with_existing_routes` widens it, before a plan
is computed, to the flows whose subscriptions already exist there (subscriptions are never
deleted by ``apply``, so the list only grows).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from floworch.runtime.servicebus.names import FLOW_RULE_NAME, UNROUTED_RULE, UNROUTED_SUBSCRIPTION
from floworch.runtime.servicebus.topology.model import (
    CorrelationFilterSpec,
    RuleSpec,
    SqlFilterSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    TrueFilterSpec,
    entity_key,
)

#: The application property step and trigger messages carry and the flow rules match.
FLOW_ID_PROPERTY = "FlowId"
#: Service Bus refuses SQL filter expressions longer than this.
MAX_SQL_FILTER_LENGTH = 1024
#: The catch-all when the routed flows do not fit in one SQL filter: messages without FlowId.
NO_FLOW_ID_SQL = f"NOT EXISTS({FLOW_ID_PROPERTY})"


def flow_rule(flow_id: str) -> RuleSpec:
    """The one rule of a flow's subscription: a correlation filter on ``FlowId``."""
    return RuleSpec(
        name=FLOW_RULE_NAME,
        filter=CorrelationFilterSpec(properties={FLOW_ID_PROPERTY: flow_id}),
    )


def routed_flow_id(rules: Sequence[RuleSpec]) -> str | None:
    """The flow a subscription with ``rules`` routes: its only rule is a correlation filter on
    ``FlowId`` alone (whatever the rule's name); else None."""
    if len(rules) != 1 or rules[0].action is not None:
        return None
    spec = rules[0].filter
    if not isinstance(spec, CorrelationFilterSpec) or spec.system_properties():
        return None
    value = dict(spec.properties).get(FLOW_ID_PROPERTY)
    if len(spec.properties) != 1 or not isinstance(value, str):
        return None
    return value


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def unrouted_sql(flow_ids: Iterable[str]) -> str:
    """The SQL filter matching the messages no flow in ``flow_ids`` routes, or
    :data:`NO_FLOW_ID_SQL` when the list does not fit in Service Bus's 1,024 characters."""
    ids = sorted(set(flow_ids))
    if not ids:
        return "1=1"
    listed = ", ".join(_sql_string(i) for i in ids)
    expression = f"{NO_FLOW_ID_SQL} OR {FLOW_ID_PROPERTY} NOT IN ({listed})"
    return expression if len(expression) <= MAX_SQL_FILTER_LENGTH else NO_FLOW_ID_SQL


def unrouted_subscription(template: SubscriptionSpec, flow_ids: Iterable[str]) -> SubscriptionSpec:
    """The catch-all subscription, with the settings of ``template`` (a flow's subscription)."""
    rule = RuleSpec(name=UNROUTED_RULE, filter=SqlFilterSpec(unrouted_sql(flow_ids)))
    return replace(template, name=UNROUTED_SUBSCRIPTION, rules=(rule,))


def catches_unrouted(topic: TopicSpec) -> SubscriptionSpec | None:
    """The topic's catch-all subscription, if it has one."""
    key = entity_key(UNROUTED_SUBSCRIPTION)
    return next((s for s in topic.subscriptions if entity_key(s.name) == key), None)


def routed_flows(subscriptions: Iterable[SubscriptionSpec]) -> set[str]:
    """The flows the given subscriptions route."""
    return {
        flow_id
        for sub in subscriptions
        if entity_key(sub.name) != entity_key(UNROUTED_SUBSCRIPTION)
        and (flow_id := routed_flow_id(sub.rules)) is not None
    }


def with_existing_routes(topology: Topology, existing: Iterable[TopicSpec]) -> Topology:
    """``topology`` whose catch-all subscriptions also exclude the flows that subscriptions of
    the namespace (``existing`` topics, with subscriptions and rules) already route."""
    present = {entity_key(t.name): t for t in existing}
    topics = []
    for topic in topology.topics:
        unrouted = catches_unrouted(topic)
        current = present.get(entity_key(topic.name))
        if unrouted is None or current is None:
            topics.append(topic)
            continue
        flows = routed_flows(topic.subscriptions) | routed_flows(current.subscriptions)
        widened = unrouted_subscription(unrouted, flows)
        subscriptions = tuple(widened if s is unrouted else s for s in topic.subscriptions)
        topics.append(replace(topic, subscriptions=subscriptions))
    return replace(topology, topics=tuple(topics))


def routing_warnings(topology: Topology) -> list[str]:
    """Advice: a catch-all that could not list every routed flow."""
    warnings = []
    for topic in topology.topics:
        unrouted = catches_unrouted(topic)
        if unrouted is None or not unrouted.rules:
            continue
        spec = unrouted.rules[0].filter
        flows = routed_flows(topic.subscriptions)
        if isinstance(spec, SqlFilterSpec) and spec.expression == NO_FLOW_ID_SQL and flows:
            warnings.append(
                f"the {len(flows)} flows routed on topic {topic.name!r} do not fit in one SQL "
                f"filter ({MAX_SQL_FILTER_LENGTH} characters), so its subscription "
                f"{UNROUTED_SUBSCRIPTION!r} only catches messages without {FLOW_ID_PROPERTY}: a "
                "message naming a flow that is not deployed is dropped by Service Bus. Use "
                "shorter flow ids, or fewer flows per triggers topic (TopologySettings."
                "triggers_topic, one per deployment)"
            )
        elif isinstance(spec, TrueFilterSpec) and flows:
            warnings.append(
                f"subscription {topic.name}/subscriptions/{UNROUTED_SUBSCRIPTION} matches every "
                "message although flows are routed there"
            )
    return warnings
