"""An in-memory namespace for tests: behaves like Service Bus's management API, without I/O.

Its defaults, its "never" and the ``$Default`` rule of a new subscription are the model's
(:func:`~floworch.runtime.servicebus.topology.model.described`,
:func:`~floworch.runtime.servicebus.topology.model.new_subscription_rules`), and it passes the
backend contract (:mod:`floworch.testing.topology_contract`) as the admin and ARM backends do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

from floworch.runtime.servicebus.topology.errors import EntityExistsError, EntityNotFoundError
from floworch.runtime.servicebus.topology.model import (
    QueueSpec,
    RuleSpec,
    SubscriptionSpec,
    TopicSpec,
    described,
    entity_key,
    new_subscription_rules,
    rule_path,
    subscription_path,
)

_E = TypeVar("_E", QueueSpec, TopicSpec, SubscriptionSpec)


def _merge(base: _E, overlay: _E) -> _E:
    """``base`` with every setting ``overlay`` gives (not None); keeps ``base``'s name."""
    changes = {
        f.name: getattr(overlay, f.name)
        for f in fields(overlay)
        if f.name not in ("name", "subscriptions", "rules") and getattr(overlay, f.name) is not None
    }
    return replace(base, **changes)


@dataclass
class _Subscription:
    spec: SubscriptionSpec
    rules: dict[str, RuleSpec] = field(default_factory=dict)


@dataclass
class _Topic:
    spec: TopicSpec
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)


class InMemoryNamespace:
    """A :class:`~floworch.runtime.servicebus.topology.backend.NamespaceBackend` in memory.

    ``operations`` records every change made (``"create queue flow-cron"``), so tests can check
    that a second apply changes nothing.
    """

    def __init__(self, target: str = "memory://namespace") -> None:
        self._target = target
        self.queues: dict[str, QueueSpec] = {}
        self.topics: dict[str, _Topic] = {}
        self.operations: list[str] = []

    @property
    def target(self) -> str:
        return self._target

    def _error(
        self,
        cls: type[EntityExistsError] | type[EntityNotFoundError],
        op: str,
        kind: str,
        path: str,
    ) -> Exception:
        verb = "already exists" if cls is EntityExistsError else "does not exist"
        return cls(
            f"the {kind} {path!r} {verb} in {self._target}",
            operation=op,
            kind=kind,
            path=path,
            target=self._target,
        )

    def _topic(self, name: str, op: str) -> _Topic:
        found = self.topics.get(entity_key(name))
        if found is None:
            raise self._error(EntityNotFoundError, op, "topic", name)
        return found

    def _sub(self, topic: str, name: str, op: str) -> _Subscription:
        found = self._topic(topic, op).subscriptions.get(entity_key(name))
        if found is None:
            raise self._error(
                EntityNotFoundError, op, "subscription", subscription_path(topic, name)
            )
        return found

    def _taken(self, name: str) -> bool:
        return entity_key(name) in self.queues or entity_key(name) in self.topics

    def list_queues(self) -> Sequence[QueueSpec]:
        return list(self.queues.values())

    def list_topics(self) -> Sequence[TopicSpec]:
        return [t.spec for t in self.topics.values()]

    def list_subscriptions(self, topic: str) -> Sequence[SubscriptionSpec]:
        return [s.spec for s in self._topic(topic, "list").subscriptions.values()]

    def list_rules(self, topic: str, subscription: str) -> Sequence[RuleSpec]:
        return list(self._sub(topic, subscription, "list").rules.values())

    def create_queue(self, queue: QueueSpec) -> None:
        if self._taken(queue.name):
            raise self._error(EntityExistsError, "create", "queue", queue.name)
        self.queues[entity_key(queue.name)] = described(queue)
        self.operations.append(f"create queue {queue.name}")

    def update_queue(self, queue: QueueSpec) -> None:
        current = self.queues.get(entity_key(queue.name))
        if current is None:
            raise self._error(EntityNotFoundError, "update", "queue", queue.name)
        self.queues[entity_key(queue.name)] = _merge(current, queue)
        self.operations.append(f"update queue {queue.name}")

    def create_topic(self, topic: TopicSpec) -> None:
        if self._taken(topic.name):
            raise self._error(EntityExistsError, "create", "topic", topic.name)
        spec = described(replace(topic, subscriptions=()))
        self.topics[entity_key(topic.name)] = _Topic(spec)
        self.operations.append(f"create topic {topic.name}")

    def update_topic(self, topic: TopicSpec) -> None:
        found = self._topic(topic.name, "update")
        found.spec = _merge(found.spec, topic)
        self.operations.append(f"update topic {topic.name}")

    def create_subscription(self, topic: str, subscription: SubscriptionSpec) -> None:
        parent = self._topic(topic, "create")
        path = subscription_path(topic, subscription.name)
        if entity_key(subscription.name) in parent.subscriptions:
            raise self._error(EntityExistsError, "create", "subscription", path)
        spec = described(replace(subscription, rules=()))
        rules = {entity_key(rule.name): rule for rule in new_subscription_rules()}
        parent.subscriptions[entity_key(subscription.name)] = _Subscription(spec, rules)
        self.operations.append(f"create subscription {path}")

    def update_subscription(self, topic: str, subscription: SubscriptionSpec) -> None:
        found = self._sub(topic, subscription.name, "update")
        found.spec = _merge(found.spec, subscription)
        self.operations.append(f"update subscription {subscription_path(topic, subscription.name)}")

    def create_rule(self, topic: str, subscription: str, rule: RuleSpec) -> None:
        sub = self._sub(topic, subscription, "create")
        path = rule_path(topic, subscription, rule.name)
        if entity_key(rule.name) in sub.rules:
            raise self._error(EntityExistsError, "create", "rule", path)
        sub.rules[entity_key(rule.name)] = rule
        self.operations.append(f"create rule {path}")

    def update_rule(self, topic: str, subscription: str, rule: RuleSpec) -> None:
        sub = self._sub(topic, subscription, "update")
        path = rule_path(topic, subscription, rule.name)
        current = sub.rules.get(entity_key(rule.name))
        if current is None:
            raise self._error(EntityNotFoundError, "update", "rule", path)
        sub.rules[entity_key(rule.name)] = replace(rule, name=current.name)
        self.operations.append(f"update rule {path}")

    def delete_rule(self, topic: str, subscription: str, name: str) -> None:
        sub = self._sub(topic, subscription, "delete")
        path = rule_path(topic, subscription, name)
        if sub.rules.pop(entity_key(name), None) is None:
            raise self._error(EntityNotFoundError, "delete", "rule", path)
        self.operations.append(f"delete rule {path}")
