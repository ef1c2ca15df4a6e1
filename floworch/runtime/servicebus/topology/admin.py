"""The topology port over Service Bus's own management API (``ServiceBusAdministrationClient``),
authorised by a SAS key with Manage rights or an Entra ID role on the namespace. Also works
against the local emulator's HTTPS management endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, TypeVar

from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    QueueProperties,
    RuleProperties,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
    SubscriptionProperties,
    TopicProperties,
    TrueRuleFilter,
)

from floworch.runtime.servicebus.config import ServiceBusConnection
from floworch.runtime.servicebus.topology.apply import apply_topology
from floworch.runtime.servicebus.topology.desired import FlowLike, desired_topology
from floworch.runtime.servicebus.topology.durations import never_as_none
from floworch.runtime.servicebus.topology.model import (
    CorrelationFilterSpec,
    FalseFilterSpec,
    PropertyValue,
    QueueSpec,
    RuleFilterSpec,
    RuleSpec,
    SqlFilterSpec,
    SubscriptionSpec,
    TopicSpec,
    TrueFilterSpec,
    rule_path,
    subscription_path,
)
from floworch.runtime.servicebus.topology.plan import Plan
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
from floworch.runtime.servicebus.topology.settings import TopologySettings

ACCESS_HINT = (
    "managing entities needs a connection string whose key has Manage rights, or the "
    "'Azure Service Bus Data Owner' role on the namespace; where only Azure RBAC control-plane "
    "access is allowed use ARM mode (--arm)"
)

_P = TypeVar("_P")


def _settings(props: object, attrs: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attr in attrs:
        value = getattr(props, _SDK_NAMES.get(attr, attr), None)
        if isinstance(value, timedelta):
            value = never_as_none(value)
        values[attr] = value
    return values


def _overlay(props: _P, spec: object, attrs: Sequence[str]) -> _P:
    for attr in attrs:
        value = getattr(spec, attr)
        if value is not None:
            setattr(props, _SDK_NAMES.get(attr, attr), value)
    return props


def _property_value(value: object) -> PropertyValue:
    return value if isinstance(value, str | bool | int | float) else str(value)


def filter_from_sdk(value: object) -> RuleFilterSpec:
    """The SDK's rule filter as a :data:`RuleFilterSpec`."""
    if isinstance(value, CorrelationRuleFilter):
        return CorrelationFilterSpec(
            correlation_id=value.correlation_id,
            message_id=value.message_id,
            to=value.to,
            reply_to=value.reply_to,
            subject=value.label,
            session_id=value.session_id,
            reply_to_session_id=value.reply_to_session_id,
            content_type=value.content_type,
            properties={k: _property_value(v) for k, v in (value.properties or {}).items()},
        )
    if isinstance(value, TrueRuleFilter):
        return TrueFilterSpec()
    if isinstance(value, FalseRuleFilter):
        return FalseFilterSpec()
    if isinstance(value, SqlRuleFilter):
        return SqlFilterSpec(value.sql_expression or "")
    return TrueFilterSpec()  # no filter: Service Bus matches every message


def filter_to_sdk(spec: RuleFilterSpec) -> CorrelationRuleFilter | SqlRuleFilter:
    """A :data:`RuleFilterSpec` as the SDK's rule filter."""
    if isinstance(spec, CorrelationFilterSpec):
        return CorrelationRuleFilter(
            correlation_id=spec.correlation_id,
            message_id=spec.message_id,
            to=spec.to,
            reply_to=spec.reply_to,
            label=spec.subject,
            session_id=spec.session_id,
            reply_to_session_id=spec.reply_to_session_id,
            content_type=spec.content_type,
            properties={
                k: str(v) if isinstance(v, uuid.UUID) else v
                for k, v in spec.properties.items()
                if v is not None
            },
        )
    if isinstance(spec, SqlFilterSpec):
        return SqlRuleFilter(spec.expression)
    if isinstance(spec, FalseFilterSpec):
        return FalseRuleFilter()
    return TrueRuleFilter()


class AdminNamespace:
    """:class:`~floworch.runtime.servicebus.topology.backend.NamespaceBackend` over a
    ``ServiceBusAdministrationClient`` (the caller owns and closes the client).

    Example:
        >>> client = ServiceBusAdministrationClient.from_connection_string(conn)
        >>> apply_topology(AdminNamespace(client), desired_topology(registry))
    """

    def __init__(self, client: ServiceBusAdministrationClient) -> None:
        self._client = client
        self._target = f"sb://{client.fully_qualified_namespace}"

    @property
    def target(self) -> str:
        return self._target

    def _errors(self, operation: str, kind: str, path: str) -> AbstractContextManager[None]:
        return translated_errors(
            operation=operation, kind=kind, path=path, target=self._target, access_hint=ACCESS_HINT
        )

    def _list(self, kind: str, path: str, fetch: Callable[[], Iterator[_P]]) -> list[_P]:
        with self._errors("list", kind, path):
            return list(fetch())

    # --- reading --------------------------------------------------------------------------

    def list_queues(self) -> Sequence[QueueSpec]:
        found: list[QueueProperties] = self._list("queues", "", self._client.list_queues)
        return [QueueSpec(name=q.name, **_settings(q, _QUEUE_ATTRS)) for q in found]

    def list_topics(self) -> Sequence[TopicSpec]:
        found: list[TopicProperties] = self._list("topics", "", self._client.list_topics)
        return [TopicSpec(name=t.name, **_settings(t, _TOPIC_ATTRS)) for t in found]

    def list_subscriptions(self, topic: str) -> Sequence[SubscriptionSpec]:
        found: list[SubscriptionProperties] = self._list(
            "subscriptions of topic", topic, lambda: self._client.list_subscriptions(topic)
        )
        return [SubscriptionSpec(name=s.name, **_settings(s, _SUBSCRIPTION_ATTRS)) for s in found]

    def list_rules(self, topic: str, subscription: str) -> Sequence[RuleSpec]:
        found: list[RuleProperties] = self._list(
            "rules of subscription",
            subscription_path(topic, subscription),
            lambda: self._client.list_rules(topic, subscription),
        )
        return [
            RuleSpec(
                name=r.name,
                filter=filter_from_sdk(r.filter),
                action=r.action.sql_expression if isinstance(r.action, SqlRuleAction) else None,
            )
            for r in found
        ]

    # --- queues and topics ----------------------------------------------------------------

    def create_queue(self, queue: QueueSpec) -> None:
        settings = {
            _SDK_NAMES.get(a, a): getattr(queue, a)
            for a in _QUEUE_ATTRS
            if getattr(queue, a) is not None
        }
        with self._errors("create", "queue", queue.name):
            self._client.create_queue(queue.name, **settings)

    def update_queue(self, queue: QueueSpec) -> None:
        with self._errors("update", "queue", queue.name):
            current = self._client.get_queue(queue.name)
            self._client.update_queue(_overlay(current, queue, _QUEUE_ATTRS))

    def create_topic(self, topic: TopicSpec) -> None:
        settings = {
            _SDK_NAMES.get(a, a): getattr(topic, a)
            for a in _TOPIC_ATTRS
            if getattr(topic, a) is not None
        }
        with self._errors("create", "topic", topic.name):
            self._client.create_topic(topic.name, **settings)

    def update_topic(self, topic: TopicSpec) -> None:
        with self._errors("update", "topic", topic.name):
            current = self._client.get_topic(topic.name)
            self._client.update_topic(_overlay(current, topic, _TOPIC_ATTRS))

    # --- subscriptions and rules ----------------------------------------------------------

    def create_subscription(self, topic: str, subscription: SubscriptionSpec) -> None:
        settings = {
            _SDK_NAMES.get(a, a): getattr(subscription, a)
            for a in _SUBSCRIPTION_ATTRS
            if getattr(subscription, a) is not None
        }
        path = subscription_path(topic, subscription.name)
        with self._errors("create", "subscription", path):
            self._client.create_subscription(topic, subscription.name, **settings)

    def update_subscription(self, topic: str, subscription: SubscriptionSpec) -> None:
        path = subscription_path(topic, subscription.name)
        with self._errors("update", "subscription", path):
            current = self._client.get_subscription(topic, subscription.name)
            self._client.update_subscription(
                topic, _overlay(current, subscription, _SUBSCRIPTION_ATTRS)
            )

    def create_rule(self, topic: str, subscription: str, rule: RuleSpec) -> None:
        action = SqlRuleAction(rule.action) if rule.action else None
        with self._errors("create", "rule", rule_path(topic, subscription, rule.name)):
            self._client.create_rule(
                topic, subscription, rule.name, filter=filter_to_sdk(rule.filter), action=action
            )

    def update_rule(self, topic: str, subscription: str, rule: RuleSpec) -> None:
        with self._errors("update", "rule", rule_path(topic, subscription, rule.name)):
            current = self._client.get_rule(topic, subscription, rule.name)
            current.filter = filter_to_sdk(rule.filter)
            current.action = SqlRuleAction(rule.action) if rule.action else None
            self._client.update_rule(topic, subscription, current)

    def delete_rule(self, topic: str, subscription: str, name: str) -> None:
        with self._errors("delete", "rule", rule_path(topic, subscription, name)):
            self._client.delete_rule(topic, subscription, name)


def apply_to_connection(
    connection: ServiceBusConnection,
    flows: Iterable[FlowLike],
    settings: TopologySettings | None = None,
    *,
    ca_file: str | None = None,
) -> Plan:
    """Make the namespace of ``connection`` hold what ``flows`` need; returns the applied plan.

    What ``floworch worker --auto-create-topology`` calls (in a thread: it blocks). A
    connection string needs Manage rights; a namespace is reached with
    ``DefaultAzureCredential`` and needs the "Azure Service Bus Data Owner" role.

    Args:
        connection: the namespace.
        flows: the flows (a ``FlowRegistry``, definitions or manifests).
        settings: entity names and settings; use :meth:`TopologySettings.for_runtime` so the
            names match the runtime's ``ServiceBusSettings``.
        ca_file: a CA certificate to trust (the local emulator's ``ca_file``).

    Raises:
        TopologyConflictError, EntityOperationError: as :func:`apply_topology`.
    """
    desired = desired_topology(flows, settings)
    transport: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.4}
    if ca_file:
        transport["connection_verify"] = ca_file
    if connection.connection_string:
        client = ServiceBusAdministrationClient.from_connection_string(
            connection.connection_string, **transport
        )
        with client:
            return apply_topology(AdminNamespace(client), desired)
    from azure.identity import DefaultAzureCredential

    assert connection.namespace is not None  # ServiceBusConnection holds exactly one
    with DefaultAzureCredential() as credential:
        host = connection.namespace.removeprefix("sb://").rstrip("/")
        with ServiceBusAdministrationClient(host, credential, **transport) as client:
            return apply_topology(AdminNamespace(client), desired)
