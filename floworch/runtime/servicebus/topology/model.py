"""The Service Bus entity model, as plain values: the one every part of floworch uses (the
topology manager and its backends, the local emulator, the ARM fake). No SDK, no proton.

Two views of each entity:

- a **description** (:class:`QueueSettings`, :class:`TopicSettings`, :class:`SubscriptionSettings`)
  is everything Service Bus stores, every field with Service Bus's default: what the emulator
  holds and what a namespace reports;
- a **spec** (:class:`QueueSpec`, :class:`TopicSpec`, :class:`SubscriptionSpec`) names only the
  settings the topology manager manages; a setting of ``None`` is not managed (Service Bus keeps
  whatever it has). :func:`described` is the spec a namespace holds once ``spec`` is created.

In both, a duration of ``None`` read from a namespace (TTL, auto-delete) means "never" (Service
Bus's ``TimeSpan.MaxValue``, :data:`~floworch.runtime.servicebus.topology.durations.NEVER_TEXT`
on the wire); durations are ``timedelta``. Rules and filters are one set of classes, and every
new subscription gets :data:`DEFAULT_RULE` (:func:`new_subscription_rules`). Names compare
case-insensitively (:func:`entity_key`).
"""

from __future__ import annotations

import enum
import re
import types
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import TypeAlias, TypeVar

#: The rule Service Bus gives every new subscription; it matches every message.
DEFAULT_RULE_NAME = "$Default"

#: Values of application properties (and of the correlation filters that match them).
PropertyValue: TypeAlias = str | bool | int | float | datetime | timedelta | uuid.UUID | None

#: Queue and topic names: letters, digits, '.', '-', '_', '/'; starting and ending with a letter
#: or digit; up to 260 characters.
ENTITY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._\-/]{0,258}[A-Za-z0-9])?$")
#: Subscription and rule names: up to 50 characters (``$`` starts only ``$Default``-like names).
CHILD_NAME = re.compile(r"^[A-Za-z0-9$][A-Za-z0-9._\-]{0,49}$")

_TRUE_SQL = re.compile(r"^\s*\(?\s*1\s*=\s*1\s*\)?\s*$")
_FALSE_SQL = re.compile(r"^\s*\(?\s*1\s*=\s*0\s*\)?\s*$")


def entity_key(*names: str) -> str:
    """Case-insensitive lookup key of an entity path; Service Bus compares names that way."""
    return "/".join(name.casefold() for name in names)


@dataclass(frozen=True, kw_only=True, eq=False)
class CorrelationFilterSpec:
    """Matches when every given system property and application property equals the message's.

    ``subject`` is the message's ``Subject`` (``Label`` in older APIs).
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
        # A frozen value must not share a dict its caller can still change.
        object.__setattr__(self, "properties", types.MappingProxyType(dict(self.properties)))

    def system_properties(self) -> dict[str, str]:
        """The system properties that are set, by their attribute name."""
        return {
            f.name: value
            for f in fields(self)
            if f.name != "properties" and (value := getattr(self, f.name)) is not None
        }

    def _key(self) -> tuple[object, ...]:
        props = tuple(sorted((k, type(v).__name__, v) for k, v in self.properties.items()))
        return (*(getattr(self, f.name) for f in fields(self) if f.name != "properties"), props)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CorrelationFilterSpec):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class SqlFilterSpec:
    """A Service Bus SQL filter expression, e.g. ``"sys.Label = 'x' AND amount > 10"``."""

    expression: str

    @property
    def sql_expression(self) -> str:
        """The expression, as Service Bus names it."""
        return self.expression


@dataclass(frozen=True)
class TrueFilterSpec:
    """Matches every message (Service Bus stores it as the SQL filter ``1=1``)."""

    @property
    def sql_expression(self) -> str:
        return "1=1"


@dataclass(frozen=True)
class FalseFilterSpec:
    """Matches no message (SQL ``1=0``)."""

    @property
    def sql_expression(self) -> str:
        return "1=0"


RuleFilterSpec: TypeAlias = CorrelationFilterSpec | SqlFilterSpec | TrueFilterSpec | FalseFilterSpec

# The names the emulator and Service Bus use for the same classes.
CorrelationFilter = CorrelationFilterSpec
SqlFilter = SqlFilterSpec
TrueFilter = TrueFilterSpec
FalseFilter = FalseFilterSpec
RuleFilter: TypeAlias = RuleFilterSpec


def normalise_filter(spec: RuleFilterSpec) -> RuleFilterSpec:
    """``1=1`` and ``1=0`` SQL filters become :class:`TrueFilterSpec` / :class:`FalseFilterSpec`,
    so a filter read back from Service Bus compares equal to the one that was written."""
    if isinstance(spec, SqlFilterSpec):
        if _TRUE_SQL.match(spec.expression):
            return TrueFilterSpec()
        if _FALSE_SQL.match(spec.expression):
            return FalseFilterSpec()
    return spec


@dataclass(frozen=True, kw_only=True)
class RuleSpec:
    """A subscription rule: a filter and an optional SQL action (``SET user.x = 1``)."""

    name: str
    filter: RuleFilterSpec = field(default_factory=TrueFilterSpec)
    action: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "filter", normalise_filter(self.filter))
        if self.action is not None and not self.action.strip():
            object.__setattr__(self, "action", None)


#: The rule Service Bus gives every new subscription: ``$Default``, matching every message.
DEFAULT_RULE = RuleSpec(name=DEFAULT_RULE_NAME)


def new_subscription_rules() -> tuple[RuleSpec, ...]:
    """The rules of a subscription just created, before any rule is added or removed."""
    return (DEFAULT_RULE,)


# --- descriptions: what Service Bus stores, with its defaults --------------------------------


class EntityStatus(enum.StrEnum):
    """Entity status values as Service Bus spells them."""

    ACTIVE = "Active"
    DISABLED = "Disabled"
    SEND_DISABLED = "SendDisabled"
    RECEIVE_DISABLED = "ReceiveDisabled"


@dataclass(frozen=True, kw_only=True)
class QueueSettings:
    """A queue as Service Bus describes it; every default is Service Bus's.

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
    """A topic as Service Bus describes it; every default is Service Bus's."""

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
    """A subscription of ``topic_name`` as Service Bus describes it, with its defaults."""

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


# --- specs: the settings the topology manager manages ----------------------------------------


@dataclass(frozen=True, kw_only=True)
class QueueSpec:
    """A queue. Settings left ``None`` are not managed."""

    name: str
    lock_duration: timedelta | None = None
    max_delivery_count: int | None = None
    default_message_ttl: timedelta | None = None
    dead_lettering_on_message_expiration: bool | None = None
    requires_duplicate_detection: bool | None = None
    duplicate_detection_history_time_window: timedelta | None = None
    requires_session: bool | None = None


@dataclass(frozen=True, kw_only=True)
class SubscriptionSpec:
    """A topic subscription with exactly the rules it should have."""

    name: str
    lock_duration: timedelta | None = None
    max_delivery_count: int | None = None
    default_message_ttl: timedelta | None = None
    dead_lettering_on_message_expiration: bool | None = None
    requires_session: bool | None = None
    rules: tuple[RuleSpec, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """A topic and its subscriptions."""

    name: str
    default_message_ttl: timedelta | None = None
    requires_duplicate_detection: bool | None = None
    duplicate_detection_history_time_window: timedelta | None = None
    subscriptions: tuple[SubscriptionSpec, ...] = ()


EntitySpec: TypeAlias = QueueSpec | TopicSpec | SubscriptionSpec


@dataclass(frozen=True, kw_only=True)
class Topology:
    """Everything a namespace must hold: topics (with subscriptions and rules) and queues."""

    topics: tuple[TopicSpec, ...] = ()
    queues: tuple[QueueSpec, ...] = ()

    def topic(self, name: str) -> TopicSpec | None:
        """The topic called ``name`` (case-insensitive), or None."""
        return next((t for t in self.topics if entity_key(t.name) == entity_key(name)), None)

    def queue(self, name: str) -> QueueSpec | None:
        """The queue called ``name`` (case-insensitive), or None."""
        return next((q for q in self.queues if entity_key(q.name) == entity_key(name)), None)


@dataclass(frozen=True)
class Setting:
    """A managed setting: its attribute, its name in the topology document, and whether Service
    Bus allows changing it on an existing entity."""

    attr: str
    json_name: str
    mutable: bool = True


_LOCK = Setting("lock_duration", "lockDuration")
_DELIVERIES = Setting("max_delivery_count", "maxDeliveryCount")
_TTL = Setting("default_message_ttl", "defaultMessageTimeToLive")
_DEAD_LETTER = Setting("dead_lettering_on_message_expiration", "deadLetteringOnMessageExpiration")
_DUPLICATES = Setting("requires_duplicate_detection", "requiresDuplicateDetection", mutable=False)
_WINDOW = Setting("duplicate_detection_history_time_window", "duplicateDetectionHistoryTimeWindow")
_SESSION = Setting("requires_session", "requiresSession", mutable=False)

#: Managed settings per entity kind, in document order.
QUEUE_SETTINGS = (_LOCK, _DELIVERIES, _TTL, _DEAD_LETTER, _DUPLICATES, _WINDOW, _SESSION)
TOPIC_SETTINGS = (_TTL, _DUPLICATES, _WINDOW)
SUBSCRIPTION_SETTINGS = (_LOCK, _DELIVERIES, _TTL, _DEAD_LETTER, _SESSION)


def settings_of(spec: EntitySpec) -> tuple[Setting, ...]:
    """The managed settings of the kind of ``spec``."""
    if isinstance(spec, QueueSpec):
        return QUEUE_SETTINGS
    if isinstance(spec, TopicSpec):
        return TOPIC_SETTINGS
    return SUBSCRIPTION_SETTINGS


Description: TypeAlias = QueueSettings | TopicSettings | SubscriptionSettings
_S = TypeVar("_S", QueueSpec, TopicSpec, SubscriptionSpec)


def description_of(spec: EntitySpec) -> Description:
    """What Service Bus stores once ``spec`` is created: its settings, Service Bus's defaults
    for the rest."""
    given = {s.attr: getattr(spec, s.attr) for s in settings_of(spec)}
    given = {attr: value for attr, value in given.items() if value is not None}
    if isinstance(spec, QueueSpec):
        return QueueSettings(name=spec.name, **given)
    if isinstance(spec, TopicSpec):
        return TopicSettings(name=spec.name, **given)
    return SubscriptionSettings(topic_name="", name=spec.name, **given)


def described(spec: _S) -> _S:
    """``spec`` with every managed setting it leaves ``None`` set to Service Bus's default (a
    duration default of ``None`` stays: it means "never"): the spec a namespace reports for an
    entity created from ``spec``."""
    description = description_of(spec)
    return replace(spec, **{s.attr: getattr(description, s.attr) for s in settings_of(spec)})


def spec_of(description: Description) -> EntitySpec:
    """The managed settings of a description, as a spec."""
    if isinstance(description, QueueSettings):
        kind: EntitySpec = QueueSpec(name=description.name)
    elif isinstance(description, TopicSettings):
        kind = TopicSpec(name=description.name)
    else:
        kind = SubscriptionSpec(name=description.name)
    return replace(kind, **{s.attr: getattr(description, s.attr) for s in settings_of(kind)})


def subscription_path(topic: str, subscription: str) -> str:
    """``topic/subscriptions/sub``, the entity path Service Bus uses."""
    return f"{topic}/subscriptions/{subscription}"


def rule_path(topic: str, subscription: str, rule: str) -> str:
    """``topic/subscriptions/sub/rules/rule``."""
    return f"{subscription_path(topic, subscription)}/rules/{rule}"
