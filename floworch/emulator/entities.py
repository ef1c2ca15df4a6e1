"""The emulator's management port, its error tree, and the entity model it shares with the rest
of floworch.

The entity classes (descriptions with Service Bus defaults, filters, rules, ``$Default``) are
those of :mod:`floworch.runtime.servicebus.topology.model`, re-exported here; the emulator adds
only where a rule lives (:class:`RuleSettings`) and counters. Durations are ``timedelta``;
"never" (no TTL, no auto-delete) is ``None``. Names compare case-insensitively
(:func:`entity_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from floworch.errors import FlowError
from floworch.runtime.servicebus.topology.model import (
    DEFAULT_RULE,
    DEFAULT_RULE_NAME,
    CorrelationFilter,
    EntityStatus,
    FalseFilter,
    PropertyValue,
    QueueSettings,
    RuleFilter,
    RuleSpec,
    SqlFilter,
    SubscriptionSettings,
    TopicSettings,
    TrueFilter,
    entity_key,
)

if TYPE_CHECKING:
    from floworch.emulator.topology import TopologySource

__all__ = [
    "DEFAULT_RULE_NAME",
    "CorrelationFilter",
    "EmulatorError",
    "EntityAlreadyExists",
    "EntityNotFound",
    "EntityRuntimeInfo",
    "EntityStatus",
    "FalseFilter",
    "ManagementBackend",
    "PropertyValue",
    "QueueSettings",
    "RuleFilter",
    "RuleSettings",
    "SqlFilter",
    "SubscriptionSettings",
    "TopicSettings",
    "Topology",
    "TrueFilter",
    "default_rule_of",
    "entity_key",
    "load_topology",
]

# --- errors -----------------------------------------------------------------------------------


class EmulatorError(FlowError):
    """Root of the errors the local Service Bus emulator raises on purpose."""


class EntityNotFound(EmulatorError):
    """The queue, topic, subscription or rule does not exist.

    Attributes:
        kind: ``"queue"``, ``"topic"``, ``"subscription"``, ``"rule"`` or ``"entity"``.
        path: The entity path, e.g. ``"orders"``, ``"events/subscriptions/audit"``.
    """

    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path
        super().__init__(f"the {kind} {path!r} does not exist; create it first")


class EntityAlreadyExists(EmulatorError):
    """An entity with this name (compared case-insensitively) already exists.

    Attributes:
        kind: ``"queue"``, ``"topic"``, ``"subscription"``, ``"rule"`` or ``"entity"``.
        path: The entity path.
    """

    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path
        super().__init__(f"the {kind} {path!r} already exists; update it instead")


# --- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RuleSettings(RuleSpec):
    """A rule (the model's :class:`RuleSpec`) of subscription ``topic_name/subscription_name``."""

    topic_name: str
    subscription_name: str


def default_rule_of(topic_name: str, subscription_name: str) -> RuleSettings:
    """The ``$Default`` rule a new subscription gets, as Service Bus makes it."""
    return RuleSettings(
        topic_name=topic_name, subscription_name=subscription_name, **vars(DEFAULT_RULE)
    )


@dataclass(frozen=True, kw_only=True)
class EntityRuntimeInfo:
    """Counters and timestamps of a queue, topic or subscription (times are UTC-aware).

    ``subscription_count`` is only meaningful for topics; the message counts for topics and
    subscriptions follow Service Bus (a topic reports only ``scheduled_message_count``).
    """

    created_at: datetime
    updated_at: datetime
    accessed_at: datetime
    active_message_count: int = 0
    dead_letter_message_count: int = 0
    scheduled_message_count: int = 0
    transfer_message_count: int = 0
    transfer_dead_letter_message_count: int = 0
    size_in_bytes: int = 0
    subscription_count: int = 0

    @property
    def total_message_count(self) -> int:
        """Every message the entity holds, as Service Bus counts ``MessageCount``."""
        return (
            self.active_message_count
            + self.dead_letter_message_count
            + self.scheduled_message_count
            + self.transfer_message_count
            + self.transfer_dead_letter_message_count
        )


# --- the management port ----------------------------------------------------------------------


class ManagementBackend(Protocol):
    """What the ATOM management server needs from the broker. Every method is synchronous and
    thread-safe (the HTTP server calls it from its own threads).

    Lookups are case-insensitive. Create raises :class:`EntityAlreadyExists`; get, update,
    delete and the runtime getters raise :class:`EntityNotFound` (also when a parent is missing).
    ``create_subscription`` also creates the ``$Default`` rule with a :class:`TrueFilter`, as
    Service Bus does. Deleting a topic deletes its subscriptions and their rules. Lists are in
    creation order.
    """

    def create_queue(self, settings: QueueSettings) -> QueueSettings: ...
    def get_queue(self, name: str) -> QueueSettings: ...
    def update_queue(self, settings: QueueSettings) -> QueueSettings: ...
    def delete_queue(self, name: str) -> None: ...
    def list_queues(self) -> Sequence[QueueSettings]: ...
    def get_queue_runtime_info(self, name: str) -> EntityRuntimeInfo: ...

    def create_topic(self, settings: TopicSettings) -> TopicSettings: ...
    def get_topic(self, name: str) -> TopicSettings: ...
    def update_topic(self, settings: TopicSettings) -> TopicSettings: ...
    def delete_topic(self, name: str) -> None: ...
    def list_topics(self) -> Sequence[TopicSettings]: ...
    def get_topic_runtime_info(self, name: str) -> EntityRuntimeInfo: ...

    def create_subscription(self, settings: SubscriptionSettings) -> SubscriptionSettings: ...
    def get_subscription(self, topic_name: str, name: str) -> SubscriptionSettings: ...
    def update_subscription(self, settings: SubscriptionSettings) -> SubscriptionSettings: ...
    def delete_subscription(self, topic_name: str, name: str) -> None: ...
    def list_subscriptions(self, topic_name: str) -> Sequence[SubscriptionSettings]: ...
    def get_subscription_runtime_info(self, topic_name: str, name: str) -> EntityRuntimeInfo: ...

    def create_rule(self, settings: RuleSettings) -> RuleSettings: ...
    def get_rule(self, topic_name: str, subscription_name: str, name: str) -> RuleSettings: ...
    def update_rule(self, settings: RuleSettings) -> RuleSettings: ...
    def delete_rule(self, topic_name: str, subscription_name: str, name: str) -> None: ...
    def list_rules(self, topic_name: str, subscription_name: str) -> Sequence[RuleSettings]: ...


# --- topology ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Topology:
    """Every entity declared in ``topology/servicebus.json``, in declaration order.

    A subscription declared without rules gets the ``$Default`` match-all rule (listed in
    ``rules``), as Service Bus does; a subscription with rules gets exactly those.
    """

    queues: tuple[QueueSettings, ...] = ()
    topics: tuple[TopicSettings, ...] = ()
    subscriptions: tuple[SubscriptionSettings, ...] = ()
    rules: tuple[RuleSettings, ...] = ()

    def apply(self, backend: ManagementBackend) -> None:
        """Create every entity in ``backend``, updating the ones that already exist.

        Rules of a declared subscription are made to equal the declared ones: a ``$Default``
        rule created implicitly is removed when the topology declares other rules.
        """
        for queue in self.queues:
            try:
                backend.create_queue(queue)
            except EntityAlreadyExists:
                backend.update_queue(queue)
        for topic in self.topics:
            try:
                backend.create_topic(topic)
            except EntityAlreadyExists:
                backend.update_topic(topic)
        for sub in self.subscriptions:
            try:
                backend.create_subscription(sub)
            except EntityAlreadyExists:
                backend.update_subscription(sub)
            wanted = {
                entity_key(r.name): r
                for r in self.rules
                if entity_key(r.topic_name, r.subscription_name)
                == entity_key(sub.topic_name, sub.name)
            }
            for existing in backend.list_rules(sub.topic_name, sub.name):
                if entity_key(existing.name) not in wanted:
                    backend.delete_rule(sub.topic_name, sub.name, existing.name)
            for rule in wanted.values():
                try:
                    backend.create_rule(rule)
                except EntityAlreadyExists:
                    backend.update_rule(rule)


def load_topology(source: TopologySource) -> Topology:
    """Load and validate a topology document; see :func:`floworch.emulator.topology.load_topology`.

    Raises:
        floworch.emulator.topology.TopologyError: listing every problem with its JSON path.
    """
    # Imported here because the loader (pydantic models, SQL validation) builds on this module.
    from floworch.emulator.topology import load_topology as _load

    return _load(source)
