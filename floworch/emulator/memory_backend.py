"""An in-memory :class:`~floworch.emulator.entities.ManagementBackend` of descriptions only.

It holds no messages (every counter is zero); it exists for tests of the management API and as the
reference behaviour of the port: case-insensitive names, ``$Default`` rules, cascading deletes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Generic, TypeVar

from floworch.emulator.entities import (
    EntityAlreadyExists,
    EntityNotFound,
    EntityRuntimeInfo,
    QueueSettings,
    RuleSettings,
    SubscriptionSettings,
    TopicSettings,
    entity_key,
)
from floworch.runtime.servicebus.topology.model import new_subscription_rules

T = TypeVar("T")


@dataclass
class _Stored(Generic[T]):
    settings: T
    info: EntityRuntimeInfo


def _fresh_info(now: datetime) -> EntityRuntimeInfo:
    return EntityRuntimeInfo(created_at=now, updated_at=now, accessed_at=now)


class InMemoryManagementBackend:
    """Thread-safe dictionaries of entity descriptions.

    Args:
        clock: Returns the current UTC time; injectable so tests can pin timestamps.
    """

    def __init__(self, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._queues: dict[str, _Stored[QueueSettings]] = {}
        self._topics: dict[str, _Stored[TopicSettings]] = {}
        self._subscriptions: dict[str, _Stored[SubscriptionSettings]] = {}
        self._rules: dict[str, RuleSettings] = {}

    # -- generic helpers (callers hold the lock) --

    def _create(self, table: dict[str, _Stored[T]], key: str, settings: T, kind: str) -> T:
        if key in table:
            raise EntityAlreadyExists(kind, key)
        table[key] = _Stored(settings, _fresh_info(self._clock()))
        return settings

    def _get(self, table: dict[str, _Stored[T]], key: str, kind: str) -> _Stored[T]:
        try:
            return table[key]
        except KeyError:
            raise EntityNotFound(kind, key) from None

    def _update(self, table: dict[str, _Stored[T]], key: str, settings: T, kind: str) -> T:
        stored = self._get(table, key, kind)
        stored.settings = settings
        stored.info = replace(stored.info, updated_at=self._clock())
        return settings

    def _require_topic(self, topic_name: str) -> None:
        self._get(self._topics, entity_key(topic_name), "topic")

    def _require_subscription(self, topic_name: str, name: str) -> None:
        self._get(self._subscriptions, entity_key(topic_name, name), "subscription")

    # -- queues --

    def create_queue(self, settings: QueueSettings) -> QueueSettings:
        with self._lock:
            return self._create(self._queues, entity_key(settings.name), settings, "queue")

    def get_queue(self, name: str) -> QueueSettings:
        with self._lock:
            return self._get(self._queues, entity_key(name), "queue").settings

    def update_queue(self, settings: QueueSettings) -> QueueSettings:
        with self._lock:
            return self._update(self._queues, entity_key(settings.name), settings, "queue")

    def delete_queue(self, name: str) -> None:
        with self._lock:
            self._get(self._queues, entity_key(name), "queue")
            del self._queues[entity_key(name)]

    def list_queues(self) -> Sequence[QueueSettings]:
        with self._lock:
            return [stored.settings for stored in self._queues.values()]

    def get_queue_runtime_info(self, name: str) -> EntityRuntimeInfo:
        with self._lock:
            return self._get(self._queues, entity_key(name), "queue").info

    # -- topics --

    def create_topic(self, settings: TopicSettings) -> TopicSettings:
        with self._lock:
            return self._create(self._topics, entity_key(settings.name), settings, "topic")

    def get_topic(self, name: str) -> TopicSettings:
        with self._lock:
            return self._get(self._topics, entity_key(name), "topic").settings

    def update_topic(self, settings: TopicSettings) -> TopicSettings:
        with self._lock:
            return self._update(self._topics, entity_key(settings.name), settings, "topic")

    def delete_topic(self, name: str) -> None:
        with self._lock:
            self._get(self._topics, entity_key(name), "topic")
            del self._topics[entity_key(name)]
            prefix = entity_key(name) + "/"
            for table in (self._subscriptions, self._rules):
                for key in [k for k in table if k.startswith(prefix)]:
                    del table[key]

    def list_topics(self) -> Sequence[TopicSettings]:
        with self._lock:
            return [stored.settings for stored in self._topics.values()]

    def get_topic_runtime_info(self, name: str) -> EntityRuntimeInfo:
        with self._lock:
            info = self._get(self._topics, entity_key(name), "topic").info
            prefix = entity_key(name) + "/"
            count = sum(1 for key in self._subscriptions if key.startswith(prefix))
            return replace(info, subscription_count=count)

    # -- subscriptions --

    def create_subscription(self, settings: SubscriptionSettings) -> SubscriptionSettings:
        with self._lock:
            self._require_topic(settings.topic_name)
            key = entity_key(settings.topic_name, settings.name)
            self._create(self._subscriptions, key, settings, "subscription")
            for default in new_subscription_rules():
                rule = RuleSettings(
                    topic_name=settings.topic_name, subscription_name=settings.name, **vars(default)
                )
                self._rules[entity_key(settings.topic_name, settings.name, rule.name)] = rule
            return settings

    def get_subscription(self, topic_name: str, name: str) -> SubscriptionSettings:
        with self._lock:
            return self._get(
                self._subscriptions, entity_key(topic_name, name), "subscription"
            ).settings

    def update_subscription(self, settings: SubscriptionSettings) -> SubscriptionSettings:
        with self._lock:
            key = entity_key(settings.topic_name, settings.name)
            return self._update(self._subscriptions, key, settings, "subscription")

    def delete_subscription(self, topic_name: str, name: str) -> None:
        with self._lock:
            key = entity_key(topic_name, name)
            self._get(self._subscriptions, key, "subscription")
            del self._subscriptions[key]
            for rule_key in [k for k in self._rules if k.startswith(key + "/")]:
                del self._rules[rule_key]

    def list_subscriptions(self, topic_name: str) -> Sequence[SubscriptionSettings]:
        with self._lock:
            self._require_topic(topic_name)
            prefix = entity_key(topic_name) + "/"
            return [s.settings for k, s in self._subscriptions.items() if k.startswith(prefix)]

    def get_subscription_runtime_info(self, topic_name: str, name: str) -> EntityRuntimeInfo:
        with self._lock:
            return self._get(self._subscriptions, entity_key(topic_name, name), "subscription").info

    # -- rules --

    def create_rule(self, settings: RuleSettings) -> RuleSettings:
        with self._lock:
            self._require_subscription(settings.topic_name, settings.subscription_name)
            key = entity_key(settings.topic_name, settings.subscription_name, settings.name)
            if key in self._rules:
                raise EntityAlreadyExists("rule", key)
            self._rules[key] = settings
            return settings

    def get_rule(self, topic_name: str, subscription_name: str, name: str) -> RuleSettings:
        with self._lock:
            try:
                return self._rules[entity_key(topic_name, subscription_name, name)]
            except KeyError:
                raise EntityNotFound(
                    "rule", entity_key(topic_name, subscription_name, name)
                ) from None

    def update_rule(self, settings: RuleSettings) -> RuleSettings:
        with self._lock:
            key = entity_key(settings.topic_name, settings.subscription_name, settings.name)
            if key not in self._rules:
                raise EntityNotFound("rule", key)
            self._rules[key] = settings
            return settings

    def delete_rule(self, topic_name: str, subscription_name: str, name: str) -> None:
        with self._lock:
            key = entity_key(topic_name, subscription_name, name)
            if key not in self._rules:
                raise EntityNotFound("rule", key)
            del self._rules[key]

    def list_rules(self, topic_name: str, subscription_name: str) -> Sequence[RuleSettings]:
        with self._lock:
            self._require_subscription(topic_name, subscription_name)
            prefix = entity_key(topic_name, subscription_name) + "/"
            return [rule for key, rule in self._rules.items() if key.startswith(prefix)]
