"""Reading a namespace and comparing it with a topology: the :class:`Plan`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from floworch.runtime.servicebus.topology.backend import NamespaceBackend
from floworch.runtime.servicebus.topology.capacity import capacity_warnings, topic_capacity
from floworch.runtime.servicebus.topology.model import (
    DEFAULT_RULE_NAME,
    EntitySpec,
    QueueSpec,
    RuleSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    entity_key,
    new_subscription_rules,
    rule_path,
    settings_of,
    subscription_path,
)
from floworch.runtime.servicebus.topology.plan import (
    Action,
    Change,
    ExtraEntity,
    FieldChange,
    Kind,
    Plan,
)
from floworch.runtime.servicebus.topology.routing import routing_warnings


@dataclass(frozen=True, kw_only=True)
class NamespaceState:
    """What a namespace holds. Topics the topology declares carry their subscriptions, each with
    its rules; other topics carry none (they are not read further)."""

    queues: tuple[QueueSpec, ...] = ()
    topics: tuple[TopicSpec, ...] = ()


def read_namespace(backend: NamespaceBackend, topology: Topology) -> NamespaceState:
    """List the namespace's queues and topics, and the subscriptions and rules of the topics
    ``topology`` declares.

    Raises:
        EntityOperationError: a listing failed (named in the message).
    """
    wanted = {entity_key(t.name) for t in topology.topics}
    topics: list[TopicSpec] = []
    for topic in backend.list_topics():
        if entity_key(topic.name) in wanted:
            subscriptions = tuple(
                replace(sub, rules=tuple(backend.list_rules(topic.name, sub.name)))
                for sub in backend.list_subscriptions(topic.name)
            )
            topic = replace(topic, subscriptions=subscriptions)
        topics.append(topic)
    return NamespaceState(queues=tuple(backend.list_queues()), topics=tuple(topics))


def compute_plan(topology: Topology, state: NamespaceState, *, target: str) -> Plan:
    """The changes that make ``state`` match ``topology``, with extras, capacity and warnings.

    Only settings the topology sets are compared. Nothing is ever deleted except rules of the
    topology's subscriptions that the topology does not declare (``$Default`` included).
    """
    queues = {entity_key(q.name): q for q in state.queues}
    topics = {entity_key(t.name): t for t in state.topics}
    entities: list[Change] = []
    upserts: list[Change] = []
    removals: list[Change] = []
    for queue in topology.queues:
        key = entity_key(queue.name)
        if key in topics:
            entities.append(_name_taken(Kind.QUEUE, queue, f"a topic {topics[key].name!r}"))
        elif key not in queues:
            entities.append(_create(Kind.QUEUE, queue.name, queue))
        else:
            entities += _differences(Kind.QUEUE, queue.name, queue, queues[key])
    extra_subs: dict[str, tuple[tuple[str, tuple[RuleSpec, ...]], ...]] = {}
    for topic in topology.topics:
        key = entity_key(topic.name)
        current = topics.get(key)
        if key in queues:
            entities.append(_name_taken(Kind.TOPIC, topic, f"a queue {queues[key].name!r}"))
            continue
        if current is None:
            entities.append(_create(Kind.TOPIC, topic.name, topic))
        else:
            entities += _differences(Kind.TOPIC, topic.name, topic, current)
        existing = {entity_key(s.name): s for s in (current.subscriptions if current else ())}
        for sub in topic.subscriptions:
            path = subscription_path(topic.name, sub.name)
            found = existing.pop(entity_key(sub.name), None)
            if found is None:
                entities.append(_create(Kind.SUBSCRIPTION, path, sub, topic=topic.name))
                # Service Bus gives every new subscription a $Default rule matching everything.
                implicit = new_subscription_rules()
                _rule_changes(topic.name, sub, implicit, upserts, removals, created=True)
            else:
                entities += _differences(Kind.SUBSCRIPTION, path, sub, found, topic=topic.name)
                _rule_changes(topic.name, sub, found.rules, upserts, removals, created=False)
        extra_subs[topic.name] = tuple((s.name, s.rules) for s in existing.values())
    return Plan(
        target=target,
        changes=(*entities, *upserts, *removals),
        extras=_extras(topology, state, extra_subs),
        capacity=tuple(topic_capacity(t, len(extra_subs.get(t.name, ()))) for t in topology.topics),
        warnings=(*capacity_warnings(topology, extra_subs), *routing_warnings(topology)),
    )


def _create(kind: Kind, path: str, spec: EntitySpec, *, topic: str | None = None) -> Change:
    fields = tuple(
        FieldChange(s.json_name, None, getattr(spec, s.attr))
        for s in settings_of(spec)
        if getattr(spec, s.attr) is not None
    )
    return Change(
        action=Action.CREATE, kind=kind, path=path, topic=topic, fields=fields, wanted=spec
    )


def _name_taken(kind: Kind, spec: QueueSpec | TopicSpec, holder: str) -> Change:
    return Change(
        action=Action.CONFLICT,
        kind=kind,
        path=spec.name,
        wanted=spec,
        note=f"{holder} already has this name (queues and topics share one name space); "
        "rename one of them",
    )


def _differences(
    kind: Kind, path: str, wanted: EntitySpec, current: EntitySpec, *, topic: str | None = None
) -> list[Change]:
    mutable: list[FieldChange] = []
    fixed: list[FieldChange] = []
    for setting in settings_of(wanted):
        value = getattr(wanted, setting.attr)
        if value is None or value == getattr(current, setting.attr):
            continue
        change = FieldChange(setting.json_name, getattr(current, setting.attr), value)
        (mutable if setting.mutable else fixed).append(change)
    changes: list[Change] = []
    if mutable:
        # The update carries only settings Service Bus can change in place.
        immutable: dict[str, Any] = {s.attr: None for s in settings_of(wanted) if not s.mutable}
        changes.append(
            Change(
                action=Action.UPDATE,
                kind=kind,
                path=path,
                topic=topic,
                fields=tuple(mutable),
                wanted=replace(wanted, **immutable),
            )
        )
    if fixed:
        names = ", ".join(f.name for f in fixed)
        changes.append(
            Change(
                action=Action.CONFLICT,
                kind=kind,
                path=path,
                topic=topic,
                fields=tuple(fixed),
                wanted=wanted,
                note=f"Service Bus cannot change {names} of an existing {kind}; delete the "
                f"{kind} and apply again to recreate it (its messages are lost), or change the "
                "topology settings to match",
            )
        )
    return changes


def _rule_changes(
    topic: str,
    sub: SubscriptionSpec,
    current_rules: tuple[RuleSpec, ...],
    upserts: list[Change],
    removals: list[Change],
    *,
    created: bool,
) -> None:
    # Rules are added or replaced before any is removed, so the subscription never goes
    # without a matching rule (a message no rule matches is dropped, not kept).
    current = {entity_key(rule.name): rule for rule in current_rules}
    for rule in sub.rules:
        found = current.pop(entity_key(rule.name), None)
        fields: tuple[FieldChange, ...] = ()
        if found is None:
            action = Action.ADD
        else:
            action = Action.REPLACE
            fields = tuple(
                FieldChange(name, getattr(found, name), getattr(rule, name))
                for name in ("filter", "action")
                if getattr(found, name) != getattr(rule, name)
            )
            if not fields:
                continue
        upserts.append(
            Change(
                action=action,
                kind=Kind.RULE,
                path=rule_path(topic, sub.name, rule.name),
                topic=topic,
                subscription=sub.name,
                fields=fields,
                wanted=rule,
                current=found,
            )
        )
    for rule in current.values():
        note = None
        if created:
            note = "Service Bus adds it to every new subscription; it matches every message"
        elif rule.name == DEFAULT_RULE_NAME:
            note = "the match-all rule would deliver every flow's steps to this subscription"
        removals.append(
            Change(
                action=Action.REMOVE,
                kind=Kind.RULE,
                path=rule_path(topic, sub.name, rule.name),
                topic=topic,
                subscription=sub.name,
                current=rule,
                note=note,
            )
        )


def _extras(
    topology: Topology,
    state: NamespaceState,
    extra_subs: dict[str, tuple[tuple[str, tuple[RuleSpec, ...]], ...]],
) -> tuple[ExtraEntity, ...]:
    declared = {entity_key(q.name) for q in topology.queues}
    declared |= {entity_key(t.name) for t in topology.topics}
    extras = [
        ExtraEntity(Kind.QUEUE, q.name) for q in state.queues if entity_key(q.name) not in declared
    ]
    extras += [
        ExtraEntity(Kind.TOPIC, t.name) for t in state.topics if entity_key(t.name) not in declared
    ]
    for topic, subs in extra_subs.items():
        extras += [
            ExtraEntity(Kind.SUBSCRIPTION, subscription_path(topic, name)) for name, _ in subs
        ]
    return tuple(extras)
