"""Service Bus entity descriptions, the management port and the emulator's error tree.

The dataclasses mirror what Service Bus stores for queues, topics, subscriptions and rules, with
Service Bus defaults, so the broker, the ATOM management API and ``topology/servicebus.json`` share
one vocabulary. Durations are ``timedelta``; "never" (no TTL, no auto-delete) is ``None``.
Names compare case-insensitively, as in Service Bus; :func:`entity_key` gives the lookup key.
"""

from __future__ import annotations

import enum
import types
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeAlias

from floworch.errors import FlowError

if TYPE_CHECKING:
    from floworch.emulator.topology import TopologySource

#: The rule every new subscription gets, matching every message.
DEFAULT_RULE_NAME = "$Default"

#: Values Service Bus allows in application properties and correlation filter properties.
PropertyValue: TypeAlias = str | bool | int | float | datetime | timedelta | uuid.UUID | None


def entity_key(*names: str) -> str:
    """The case-insensitive lookup key of an entity path (``entity_key("T", "Sub") == "t/sub"``)."""
    return "/".join(name.casefold() for name in names)


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


# --- settings ---------------------------------------------------------------------------------


class EntityStatus(enum.StrEnum):
    """Entity status values as Service Bus spells them."""

    ACTIVE = "Active"
    DISABLED = "Disabled"
    SEND_DISABLED = "SendDisabled"
    RECEIVE_DISABLED = "ReceiveDisabled"


@dataclass(frozen=True, kw_only=True)
class QueueSettings:
    """A queue as Service Bus describes it, with Service Bus defaults.

    ``default_message_ttl`` and ``auto_delete_on_idle`` of ``None`` mean "never".
    """

    name: str
    lock_duration: timedelta = timedelta(seconds=60)
    max_delivery_count: int = 10
    default_message_ttl: timedelta | None = None
    dead_lettering_on_message_expiration: bool = False
    requires_duplicate_detection: bool = False
    duplicate_detection_history_time_window: timedelta = timedelta(minutes=10)
    requires_session: bool = False
    max_size_in_megabytes: int = 1024
    max_message_size_in_kilobytes: int = 256
    enable_batched_operations: bool = True
    enable_partitioning: bool = False
    enable_express: bool = False
    auto_delete_on_idle: timedelta | None = None
    forward_to: str | None = None
    forward_dead_lettered_messages_to: str | None = None
    user_metadata: str | None = None
    status: EntityStatus = EntityStatus.ACTIVE


@dataclass(frozen=True, kw_only=True)
class TopicSettings:
    """A topic as Service Bus describes it, with Service Bus defaults."""

    name: str
    default_message_ttl: timedelta | None = None
    requires_duplicate_detection: bool = False
    duplicate_detection_history_time_window: timedelta = timedelta(minutes=10)
    max_size_in_megabytes: int = 1024
    max_message_size_in_kilobytes: int = 256
    enable_batched_operations: bool = True
    enable_partitioning: bool = False
    enable_express: bool = False
    support_ordering: bool = True
    auto_delete_on_idle: timedelta | None = None
    user_metadata: str | None = None
    status: EntityStatus = EntityStatus.ACTIVE


@dataclass(frozen=True, kw_only=True)
class SubscriptionSettings:
    """A subscription of ``topic_name`` as Service Bus describes it, with Service Bus defaults."""

    topic_name: str
    name: str
    lock_duration: timedelta = timedelta(seconds=60)
    max_delivery_count: int = 10
    default_message_ttl: timedelta | None = None
    dead_lettering_on_message_expiration: bool = False
    dead_lettering_on_filter_evaluation_exceptions: bool = True
    requires_session: bool = False
    enable_batched_operations: bool = True
    auto_delete_on_idle: timedelta | None = None
    forward_to: str | None = None
    forward_dead_lettered_messages_to: str | None = None
    user_metadata: str | None = None
    status: EntityStatus = EntityStatus.ACTIVE


@dataclass(frozen=True, kw_only=True, eq=False)
class CorrelationFilter:
    """Matches when every set system property and every listed application property is equal.

    ``subject`` is the Service Bus ``Label``. ``properties`` is copied into a read-only mapping.
    """

    correlation_id: str | None = None
    message_id: str | None = None
    to: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    session_id: str | None = None
    reply_to_session_id: str | None = None
    content_type: str | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A frozen value must not share a dict its caller can still mutate.
        object.__setattr__(self, "properties", types.MappingProxyType(dict(self.properties)))

    def _key(self) -> tuple[object, ...]:
        return (
            self.correlation_id,
            self.message_id,
            self.to,
            self.reply_to,
            self.subject,
            self.session_id,
            self.reply_to_session_id,
            self.content_type,
            tuple(sorted((k, repr(v)) for k, v in self.properties.items())),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CorrelationFilter):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class SqlFilter:
    """A Service Bus SQL filter expression, e.g. ``"sys.Label = 'x' AND amount > 10"``."""

    sql_expression: str


@dataclass(frozen=True)
class TrueFilter:
    """Matches every message (Service Bus spells it ``1=1``)."""

    sql_expression: str = "1=1"


@dataclass(frozen=True)
class FalseFilter:
    """Matches no message (Service Bus spells it ``1=0``)."""

    sql_expression: str = "1=0"


@dataclass(frozen=True)
class SqlRuleAction:
    """A SQL rule action, e.g. ``"SET user.routed = TRUE; REMOVE user.tmp"``."""

    sql_expression: str


RuleFilter: TypeAlias = CorrelationFilter | SqlFilter | TrueFilter | FalseFilter


@dataclass(frozen=True, kw_only=True)
class RuleSettings:
    """A rule of subscription ``topic_name/subscription_name``."""

    topic_name: str
    subscription_name: str
    name: str = DEFAULT_RULE_NAME
    filter: RuleFilter = field(default_factory=TrueFilter)
    action: SqlRuleAction | None = None


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
