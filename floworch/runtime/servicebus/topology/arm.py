"""The topology port over Azure Resource Manager (``azure-mgmt-servicebus``), for namespaces
where only Azure RBAC control-plane access is allowed (local SAS keys disabled, no data-plane
Manage rights). Needs a role such as Contributor or "Azure Service Bus Data Owner" at the
namespace's scope."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, TypeVar

from azure.mgmt.servicebus import ServiceBusManagementClient
from azure.mgmt.servicebus.models import (
    Action,
    CorrelationFilter,
    Rule,
    Ruleproperties,
    SBQueue,
    SBQueueProperties,
    SBSubscription,
    SBSubscriptionProperties,
    SBTopic,
    SBTopicProperties,
    SqlFilter,
)

from floworch.runtime.servicebus.topology.durations import never_as_none, parse_duration
from floworch.runtime.servicebus.topology.errors import EntityExistsError, EntityNotFoundError
from floworch.runtime.servicebus.topology.model import (
    CorrelationFilterSpec,
    FalseFilterSpec,
    QueueSpec,
    RuleFilterSpec,
    RuleSpec,
    SqlFilterSpec,
    SubscriptionSpec,
    TopicSpec,
    rule_path,
    subscription_path,
)
from floworch.runtime.servicebus.topology.sdk_errors import translated_errors
from floworch.runtime.servicebus.topology.sdk_fields import (
    QUEUE_ATTRS as _QUEUE_ATTRS,
)
from floworch.runtime.servicebus.topology.sdk_fields import (
    SDK_NAMES as _SDK_NAMES,
)
from floworch.runtime.servicebus.topology.sdk_fields import (
    SUBSCRIPTION_ATTRS as _SUBSCRIPTION_ATTRS,
)
from floworch.runtime.servicebus.topology.sdk_fields import (
    TOPIC_ATTRS as _TOPIC_ATTRS,
)

ACCESS_HINT = (
    "ARM mode needs a role that can write Microsoft.ServiceBus/namespaces/* at the namespace "
    "(e.g. Contributor or 'Azure Service Bus Data Owner'); DefaultAzureCredential picks the "
    "identity from the environment, managed identity or `az login`"
)

_DURATION_ATTRS = {
    "lock_duration",
    "default_message_ttl",
    "duplicate_detection_history_time_window",
}
# .NET TimeSpan text ("1.02:03:04.5"), which some API versions return instead of ISO-8601.
_TIMESPAN = re.compile(r"^(?:(?P<d>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)$")
_M = TypeVar("_M")


def _duration(value: object) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return never_as_none(value)
    text = str(value)
    match = _TIMESPAN.match(text)
    if match:
        total = timedelta(
            days=int(match["d"] or 0),
            hours=int(match["h"]),
            minutes=int(match["m"]),
            seconds=float(match["s"]),
        )
        return never_as_none(total)
    return never_as_none(parse_duration(text))


def _settings(properties: object, attrs: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attr in attrs:
        value = getattr(properties, _SDK_NAMES.get(attr, attr), None) if properties else None
        values[attr] = _duration(value) if attr in _DURATION_ATTRS else value
    return values


def _apply(properties: _M, spec: object, attrs: Sequence[str]) -> _M:
    for attr in attrs:
        value = getattr(spec, attr)
        if value is not None:
            setattr(properties, _SDK_NAMES.get(attr, attr), value)
    return properties


def _rule_from_arm(rule: Rule) -> RuleSpec:
    props = rule.properties
    spec: RuleFilterSpec = SqlFilterSpec("1=1")
    action = None
    if props is not None:
        correlation = props.correlation_filter
        # filter_type is a str enum: compare by value, not by str() (which names the member).
        if props.filter_type == "CorrelationFilter" and correlation is not None:
            spec = CorrelationFilterSpec(
                correlation_id=correlation.correlation_id,
                message_id=correlation.message_id,
                to=correlation.to,
                reply_to=correlation.reply_to,
                subject=correlation.label,
                session_id=correlation.session_id,
                reply_to_session_id=correlation.reply_to_session_id,
                content_type=correlation.content_type,
                properties=dict(correlation.properties or {}),
            )
        elif props.sql_filter is not None and props.sql_filter.sql_expression:
            spec = SqlFilterSpec(props.sql_filter.sql_expression)
        if props.action is not None and props.action.sql_expression:
            action = props.action.sql_expression
    return RuleSpec(name=rule.name or "", filter=spec, action=action)


def _rule_to_arm(rule: RuleSpec) -> Rule:
    spec = rule.filter
    action = Action(sql_expression=rule.action) if rule.action else None
    if isinstance(spec, CorrelationFilterSpec):
        # ARM carries correlation property values as strings.
        properties = {
            k: (("true" if v else "false") if isinstance(v, bool) else str(v))
            for k, v in spec.properties.items()
        }
        props = Ruleproperties(
            filter_type="CorrelationFilter",
            correlation_filter=CorrelationFilter(
                correlation_id=spec.correlation_id,
                message_id=spec.message_id,
                to=spec.to,
                reply_to=spec.reply_to,
                label=spec.subject,
                session_id=spec.session_id,
                reply_to_session_id=spec.reply_to_session_id,
                content_type=spec.content_type,
                properties=properties or None,
            ),
            action=action,
        )
    else:
        if isinstance(spec, SqlFilterSpec):
            sql = spec.expression
        else:
            sql = "1=0" if isinstance(spec, FalseFilterSpec) else "1=1"
        props = Ruleproperties(
            filter_type="SqlFilter", sql_filter=SqlFilter(sql_expression=sql), action=action
        )
    return Rule(properties=props)


class ArmNamespace:
    """:class:`~floworch.runtime.servicebus.topology.backend.NamespaceBackend` over Azure
    Resource Manager (the caller owns and closes the client).

    Example:
        >>> client = ServiceBusManagementClient(DefaultAzureCredential(), subscription_id)
        >>> apply_topology(ArmNamespace(client, "my-rg", "my-namespace"), desired)

    Args:
        client: an ``azure.mgmt.servicebus.ServiceBusManagementClient``.
        resource_group: the namespace's resource group.
        namespace: the namespace name (not its host name).
    """

    def __init__(
        self, client: ServiceBusManagementClient, resource_group: str, namespace: str
    ) -> None:
        self._client = client
        self._rg = resource_group
        self._ns = namespace
        self._target = f"ARM namespace {namespace} (resource group {resource_group})"

    @property
    def target(self) -> str:
        return self._target

    def _errors(self, operation: str, kind: str, path: str) -> AbstractContextManager[None]:
        return translated_errors(
            operation=operation, kind=kind, path=path, target=self._target, access_hint=ACCESS_HINT
        )

    def _list(self, kind: str, path: str, fetch: Callable[[], Iterable[_M]]) -> list[_M]:
        with self._errors("list", kind, path):
            return list(fetch())

    def _exists(self, kind: str, path: str, fetch: Callable[[], object]) -> None:
        """Raise EntityExistsError when ``fetch`` finds the entity (ARM PUT would overwrite)."""
        try:
            with self._errors("read", kind, path):
                fetch()
        except EntityNotFoundError:
            return
        raise EntityExistsError(
            f"the {kind} {path!r} already exists in {self._target}",
            operation="create",
            kind=kind,
            path=path,
            target=self._target,
        )

    # --- reading --------------------------------------------------------------------------

    def list_queues(self) -> Sequence[QueueSpec]:
        found = self._list(
            "queues", "", lambda: self._client.queues.list_by_namespace(self._rg, self._ns)
        )
        return [
            QueueSpec(name=q.name or "", **_settings(q.properties, _QUEUE_ATTRS)) for q in found
        ]

    def list_topics(self) -> Sequence[TopicSpec]:
        found = self._list(
            "topics", "", lambda: self._client.topics.list_by_namespace(self._rg, self._ns)
        )
        return [
            TopicSpec(name=t.name or "", **_settings(t.properties, _TOPIC_ATTRS)) for t in found
        ]

    def list_subscriptions(self, topic: str) -> Sequence[SubscriptionSpec]:
        found = self._list(
            "subscriptions of topic",
            topic,
            lambda: self._client.subscriptions.list_by_topic(self._rg, self._ns, topic),
        )
        return [
            SubscriptionSpec(name=s.name or "", **_settings(s.properties, _SUBSCRIPTION_ATTRS))
            for s in found
        ]

    def list_rules(self, topic: str, subscription: str) -> Sequence[RuleSpec]:
        found = self._list(
            "rules of subscription",
            subscription_path(topic, subscription),
            lambda: self._client.rules.list_by_subscriptions(
                self._rg, self._ns, topic, subscription
            ),
        )
        return [_rule_from_arm(rule) for rule in found]

    # --- writing: ARM PUT is create-or-replace, so updates read, change and write back -----

    def create_queue(self, queue: QueueSpec) -> None:
        queues = self._client.queues
        self._exists("queue", queue.name, lambda: queues.get(self._rg, self._ns, queue.name))
        body = SBQueue(properties=_apply(SBQueueProperties(), queue, _QUEUE_ATTRS))
        with self._errors("create", "queue", queue.name):
            queues.create_or_update(self._rg, self._ns, queue.name, body)

    def update_queue(self, queue: QueueSpec) -> None:
        queues = self._client.queues
        with self._errors("update", "queue", queue.name):
            current = queues.get(self._rg, self._ns, queue.name)
            current.properties = _apply(
                current.properties or SBQueueProperties(), queue, _QUEUE_ATTRS
            )
            queues.create_or_update(self._rg, self._ns, queue.name, current)

    def create_topic(self, topic: TopicSpec) -> None:
        topics = self._client.topics
        self._exists("topic", topic.name, lambda: topics.get(self._rg, self._ns, topic.name))
        body = SBTopic(properties=_apply(SBTopicProperties(), topic, _TOPIC_ATTRS))
        with self._errors("create", "topic", topic.name):
            topics.create_or_update(self._rg, self._ns, topic.name, body)

    def update_topic(self, topic: TopicSpec) -> None:
        topics = self._client.topics
        with self._errors("update", "topic", topic.name):
            current = topics.get(self._rg, self._ns, topic.name)
            current.properties = _apply(
                current.properties or SBTopicProperties(), topic, _TOPIC_ATTRS
            )
            topics.create_or_update(self._rg, self._ns, topic.name, current)

    def create_subscription(self, topic: str, subscription: SubscriptionSpec) -> None:
        subs = self._client.subscriptions
        name = subscription.name
        path = subscription_path(topic, name)
        self._exists("subscription", path, lambda: subs.get(self._rg, self._ns, topic, name))
        properties = _apply(SBSubscriptionProperties(), subscription, _SUBSCRIPTION_ATTRS)
        with self._errors("create", "subscription", path):
            subs.create_or_update(
                self._rg, self._ns, topic, name, SBSubscription(properties=properties)
            )

    def update_subscription(self, topic: str, subscription: SubscriptionSpec) -> None:
        subs = self._client.subscriptions
        name = subscription.name
        with self._errors("update", "subscription", subscription_path(topic, name)):
            current = subs.get(self._rg, self._ns, topic, name)
            current.properties = _apply(
                current.properties or SBSubscriptionProperties(), subscription, _SUBSCRIPTION_ATTRS
            )
            subs.create_or_update(self._rg, self._ns, topic, name, current)

    def create_rule(self, topic: str, subscription: str, rule: RuleSpec) -> None:
        rules = self._client.rules
        path = rule_path(topic, subscription, rule.name)
        self._exists(
            "rule", path, lambda: rules.get(self._rg, self._ns, topic, subscription, rule.name)
        )
        with self._errors("create", "rule", path):
            rules.create_or_update(
                self._rg, self._ns, topic, subscription, rule.name, _rule_to_arm(rule)
            )

    def update_rule(self, topic: str, subscription: str, rule: RuleSpec) -> None:
        rules = self._client.rules
        with self._errors("update", "rule", rule_path(topic, subscription, rule.name)):
            rules.get(self._rg, self._ns, topic, subscription, rule.name)  # 404 when missing
            rules.create_or_update(
                self._rg, self._ns, topic, subscription, rule.name, _rule_to_arm(rule)
            )

    def delete_rule(self, topic: str, subscription: str, name: str) -> None:
        rules = self._client.rules
        with self._errors("delete", "rule", rule_path(topic, subscription, name)):
            rules.get(self._rg, self._ns, topic, subscription, name)  # 404 when missing
            rules.delete(self._rg, self._ns, topic, subscription, name)
