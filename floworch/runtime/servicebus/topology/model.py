"""The entities a Service Bus namespace must hold, as plain values.

The same classes describe the wanted topology and what a namespace holds. In a wanted entity a
setting of ``None`` is not managed (Service Bus keeps whatever it has); in an entity read from a
namespace ``None`` means "never" for durations (no TTL) and "not reported" otherwise.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import TypeAlias

#: The rule Service Bus gives every new subscription; it matches every message.
DEFAULT_RULE_NAME = "$Default"

#: Values a correlation filter can compare application properties with.
PropertyValue: TypeAlias = str | bool | int | float

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


@dataclass(frozen=True)
class TrueFilterSpec:
    """Matches every message (Service Bus stores it as the SQL filter ``1=1``)."""


@dataclass(frozen=True)
class FalseFilterSpec:
    """Matches no message (SQL ``1=0``)."""


RuleFilterSpec: TypeAlias = CorrelationFilterSpec | SqlFilterSpec | TrueFilterSpec | FalseFilterSpec


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


def subscription_path(topic: str, subscription: str) -> str:
    """``topic/subscriptions/sub``, the entity path Service Bus uses."""
    return f"{topic}/subscriptions/{subscription}"


def rule_path(topic: str, subscription: str, rule: str) -> str:
    """``topic/subscriptions/sub/rules/rule``."""
    return f"{subscription_path(topic, subscription)}/rules/{rule}"
