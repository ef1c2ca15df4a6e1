"""The topology the registered flows need: the steps topic and the triggers topic, each with one
subscription per flow (the triggers topic also with its catch-all ``unrouted``), the cron queue,
and every queue a ``ServiceBus`` trigger names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from floworch.errors import ValidationIssue
from floworch.model.triggers import ServiceBusTrigger
from floworch.runtime.servicebus.names import subscription_name
from floworch.runtime.servicebus.topology.errors import TopologyDocumentError
from floworch.runtime.servicebus.topology.model import (
    ENTITY_NAME,
    QueueSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    entity_key,
)
from floworch.runtime.servicebus.topology.routing import (
    FLOW_ID_PROPERTY,
    flow_rule,
    unrouted_subscription,
)
from floworch.runtime.servicebus.topology.settings import TopologySettings

__all__ = ["FLOW_ID_PROPERTY", "FlowLike", "desired_topology", "flow_rule"]


class FlowLike(Protocol):
    """What the topology needs of a flow: a :class:`~floworch.model.FlowDefinition` or a
    :class:`~floworch.model.FlowManifest` both fit."""

    @property
    def id(self) -> str: ...

    @property
    def triggers(self) -> Mapping[str, object]: ...


def desired_topology(
    flows: Iterable[FlowLike], settings: TopologySettings | None = None
) -> Topology:
    """The entities the Service Bus runtime needs for ``flows`` (a ``FlowRegistry`` works).

    Subscriptions are ordered by flow id and extra trigger queues by name, so the result (and
    the exported document) does not depend on registration order. A ``ServiceBus`` trigger
    without ``queue`` (or naming the triggers topic) is served by the flow's subscription of the
    triggers topic.

    Raises:
        TopologyDocumentError: listing every problem: two flows whose subscription names differ
            only in case, or a ``ServiceBus`` trigger naming a queue that is invalid or already
            used for something else.
    """
    settings = settings or TopologySettings()
    issues: list[ValidationIssue] = []
    names: dict[str, str] = {}
    for attr in ("steps_topic", "triggers_topic", "cron_queue"):
        name = getattr(settings, attr)
        if not ENTITY_NAME.match(name):
            issues.append(ValidationIssue(f"TopologySettings.{attr}", _bad_name(name)))
        elif entity_key(name) in names:
            issues.append(
                ValidationIssue(
                    f"TopologySettings.{attr}",
                    f"{name!r} is also the {names[entity_key(name)]}; each needs its own entity",
                )
            )
        names.setdefault(entity_key(name), attr.replace("_", " "))
    reserved = {
        entity_key(settings.steps_topic): f"the steps topic {settings.steps_topic!r}",
        entity_key(settings.cron_queue): f"the cron queue {settings.cron_queue!r}",
    }
    subscriptions: dict[str, tuple[str, SubscriptionSpec]] = {}
    trigger_queues: dict[str, str] = {}
    for flow in sorted(flows, key=lambda f: f.id):
        sub_name = subscription_name(flow.id)
        other = subscriptions.get(entity_key(sub_name))
        if other is not None:
            issues.append(
                ValidationIssue(
                    f"flows.{flow.id}",
                    f"its subscription {sub_name!r} clashes with that of flow {other[0]!r} "
                    "(Service Bus compares names case-insensitively); rename one of the flows",
                )
            )
            continue
        subscriptions[entity_key(sub_name)] = (flow.id, _subscription(sub_name, flow.id, settings))
        for key, trigger in flow.triggers.items():
            if not isinstance(trigger, ServiceBusTrigger) or trigger.queue is None:
                continue
            path = f"flows.{flow.id}.triggers.{key}.queue"
            if not ENTITY_NAME.match(trigger.queue):
                issues.append(ValidationIssue(path, _bad_name(trigger.queue)))
            elif entity_key(trigger.queue) in reserved:
                issues.append(
                    ValidationIssue(
                        path,
                        f"{trigger.queue!r} is {reserved[entity_key(trigger.queue)]}; "
                        "a ServiceBus trigger needs a queue of its own (or none, for the "
                        f"triggers topic {settings.triggers_topic!r})",
                    )
                )
            elif entity_key(trigger.queue) != entity_key(settings.triggers_topic):
                trigger_queues.setdefault(entity_key(trigger.queue), trigger.queue)
    if issues:
        raise TopologyDocumentError(issues, source="flows")
    flow_subscriptions = tuple(spec for _, spec in subscriptions.values())
    steps = TopicSpec(
        name=settings.steps_topic,
        default_message_ttl=settings.default_message_ttl,
        requires_duplicate_detection=True,
        duplicate_detection_history_time_window=settings.duplicate_detection_window,
        subscriptions=flow_subscriptions,
    )
    template = _subscription("template", "template", settings)
    flow_ids = [flow_id for flow_id, _ in subscriptions.values()]
    triggers = TopicSpec(
        name=settings.triggers_topic,
        default_message_ttl=settings.default_message_ttl,
        requires_duplicate_detection=True,
        duplicate_detection_history_time_window=settings.duplicate_detection_window,
        subscriptions=(*flow_subscriptions, unrouted_subscription(template, flow_ids)),
    )
    queues = [_queue(settings.cron_queue, settings, duplicate_detection=True)]
    queues += [
        _queue(name, settings, duplicate_detection=None)
        for _, name in sorted(trigger_queues.items())
    ]
    return Topology(topics=(steps, triggers), queues=tuple(queues))


def _bad_name(name: str) -> str:
    return (
        f"{name!r} is not a valid Service Bus queue or topic name: use letters, digits, '.', "
        "'-', '_' and '/', start and end with a letter or digit, at most 260 characters"
    )


def _subscription(name: str, flow_id: str, settings: TopologySettings) -> SubscriptionSpec:
    return SubscriptionSpec(
        name=name,
        lock_duration=settings.lock_duration,
        max_delivery_count=settings.max_delivery_count,
        default_message_ttl=settings.default_message_ttl,
        dead_lettering_on_message_expiration=settings.dead_lettering_on_message_expiration,
        requires_session=False,
        rules=(flow_rule(flow_id),),
    )


def _queue(name: str, settings: TopologySettings, *, duplicate_detection: bool | None) -> QueueSpec:
    # Queues a flow's trigger names may be shared with their senders and pre-exist; duplicate
    # detection cannot be changed after creation, so it is left alone there (None).
    return QueueSpec(
        name=name,
        lock_duration=settings.lock_duration,
        max_delivery_count=settings.max_delivery_count,
        default_message_ttl=settings.default_message_ttl,
        dead_lettering_on_message_expiration=settings.dead_lettering_on_message_expiration,
        requires_duplicate_detection=duplicate_detection,
        duplicate_detection_history_time_window=(
            settings.duplicate_detection_window if duplicate_detection else None
        ),
        requires_session=False,
    )
