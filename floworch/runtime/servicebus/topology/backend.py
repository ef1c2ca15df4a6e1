"""The port the topology manager drives: list, create and update the entities of one namespace.

Adapters: :class:`~floworch.runtime.servicebus.topology.admin.AdminNamespace` (the data-plane
management API, ``ServiceBusAdministrationClient``), :class:`~floworch.runtime.servicebus.
topology.arm.ArmNamespace` (Azure Resource Manager) and :class:`~floworch.runtime.servicebus.
topology.memory.InMemoryNamespace` (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from floworch.runtime.servicebus.topology.model import (
    QueueSpec,
    RuleSpec,
    SubscriptionSpec,
    TopicSpec,
)


@runtime_checkable
class NamespaceBackend(Protocol):
    """One namespace's entities. Every method is synchronous.

    Listed entities have every managed setting filled in (``None`` only for "never" durations);
    listed topics have no subscriptions and listed subscriptions no rules (those are listed
    separately). ``create_*`` raise
    :class:`~floworch.runtime.servicebus.topology.errors.EntityExistsError` when the entity
    exists; ``update_*``, ``delete_rule`` and ``list_*`` of a missing parent raise
    :class:`~floworch.runtime.servicebus.topology.errors.EntityNotFoundError`. ``update_*``
    changes only the settings that are not ``None``. ``create_subscription`` leaves the
    ``$Default`` rule Service Bus adds. Other failures raise
    :class:`~floworch.runtime.servicebus.topology.errors.EntityOperationError` naming the entity.
    """

    @property
    def target(self) -> str:
        """The namespace, for messages (``sb://contoso.servicebus.windows.net``)."""
        ...

    def list_queues(self) -> Sequence[QueueSpec]: ...
    def list_topics(self) -> Sequence[TopicSpec]: ...
    def list_subscriptions(self, topic: str) -> Sequence[SubscriptionSpec]: ...
    def list_rules(self, topic: str, subscription: str) -> Sequence[RuleSpec]: ...

    def create_queue(self, queue: QueueSpec) -> None: ...
    def update_queue(self, queue: QueueSpec) -> None: ...
    def create_topic(self, topic: TopicSpec) -> None: ...
    def update_topic(self, topic: TopicSpec) -> None: ...
    def create_subscription(self, topic: str, subscription: SubscriptionSpec) -> None: ...
    def update_subscription(self, topic: str, subscription: SubscriptionSpec) -> None: ...
    def create_rule(self, topic: str, subscription: str, rule: RuleSpec) -> None: ...
    def update_rule(self, topic: str, subscription: str, rule: RuleSpec) -> None: ...
    def delete_rule(self, topic: str, subscription: str, name: str) -> None: ...
