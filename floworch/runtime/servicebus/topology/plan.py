"""What separates a namespace from its topology: the changes to make, the entities left alone,
capacity figures and warnings."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from floworch.runtime.servicebus.topology.model import (
    QueueSpec,
    RuleSpec,
    SubscriptionSpec,
    TopicSpec,
)


class Action(enum.StrEnum):
    """What a change does. Entities are created or updated; rules added, replaced or removed.
    A conflict is a difference Service Bus cannot change on an existing entity."""

    CREATE = "create"
    UPDATE = "update"
    CONFLICT = "conflict"
    ADD = "add"
    REPLACE = "replace"
    REMOVE = "remove"


class Kind(enum.StrEnum):
    """The kind of entity a change or an extra entity concerns."""

    QUEUE = "queue"
    TOPIC = "topic"
    SUBSCRIPTION = "subscription"
    RULE = "rule"


@dataclass(frozen=True)
class FieldChange:
    """One setting that differs, by its name in the topology document (``maxDeliveryCount``).

    ``current`` is ``None`` for an entity still to be created; for durations it also means
    "never". Rule changes use the names ``filter`` and ``action``.
    """

    name: str
    current: object
    wanted: object


@dataclass(frozen=True, kw_only=True)
class Change:
    """One change to one entity.

    Attributes:
        action: what to do.
        kind: the kind of entity.
        path: its entity path (``flow-steps/subscriptions/flow-hello/rules/flow``).
        topic: the topic, for subscriptions and rules.
        subscription: the subscription, for rules.
        fields: the settings that differ (every wanted setting when creating).
        wanted: the entity as it should be (``None`` when removing a rule).
        current: the rule as it is, for rules replaced or removed.
        note: why, when it is not obvious.
    """

    action: Action
    kind: Kind
    path: str
    topic: str | None = None
    subscription: str | None = None
    fields: tuple[FieldChange, ...] = ()
    wanted: QueueSpec | TopicSpec | SubscriptionSpec | RuleSpec | None = None
    current: RuleSpec | None = None
    note: str | None = None


@dataclass(frozen=True)
class ExtraEntity:
    """An entity in the namespace that the topology does not declare; never deleted."""

    kind: Kind
    path: str


@dataclass(frozen=True)
class TopicCapacity:
    """How many operations one step message costs on a topic (Standard tier bills per million
    operations): one send, one receive, one complete, and one filter evaluation per
    subscription of the topic."""

    topic: str
    subscriptions: int

    @property
    def operations_per_step(self) -> int:
        """``3 + subscriptions``."""
        return 3 + self.subscriptions


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The difference between a namespace and a topology.

    Attributes:
        target: the namespace.
        changes: in the order they are applied (queues, topics, subscriptions, rules added or
            replaced, rules removed); conflicts are listed too but never applied.
        extras: entities the topology does not declare (left alone).
        capacity: per topic of the topology.
        warnings: capacity and filter advice.
    """

    target: str
    changes: tuple[Change, ...] = ()
    extras: tuple[ExtraEntity, ...] = ()
    capacity: tuple[TopicCapacity, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def pending(self) -> bool:
        """Whether the namespace differs from the topology (conflicts included)."""
        return bool(self.changes)

    @property
    def conflicts(self) -> tuple[Change, ...]:
        """The differences apply cannot make."""
        return tuple(c for c in self.changes if c.action is Action.CONFLICT)

    def count(self, action: Action) -> int:
        """How many changes do ``action``."""
        return sum(1 for c in self.changes if c.action is action)

    def summary(self) -> str:
        """``"3 to create, 1 to update, 2 rules to add, 1 rule to remove"`` or ``"no changes"``."""
        parts = []
        for action, text in (
            (Action.CREATE, "to create"),
            (Action.UPDATE, "to update"),
            (Action.ADD, "to add"),
            (Action.REPLACE, "to replace"),
            (Action.REMOVE, "to remove"),
            (Action.CONFLICT, "in conflict"),
        ):
            n = self.count(action)
            if n and action in _RULE_ACTIONS:
                parts.append(f"{n} {'rule' if n == 1 else 'rules'} {text}")
            elif n:
                parts.append(f"{n} {text}")
        return ", ".join(parts) if parts else "no changes"


_RULE_ACTIONS = frozenset({Action.ADD, Action.REPLACE, Action.REMOVE})
