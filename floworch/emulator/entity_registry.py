"""The emulator's queues, topics, subscriptions and rules, and their management operations.

:class:`EntityRegistry` implements :class:`~floworch.emulator.entities.ManagementBackend` but is
not thread-safe: it belongs to the reactor thread, and :mod:`floworch.emulator.server` marshals
calls from the HTTPS management server onto that thread.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from floworch.emulator.amqp_message import AmqpMessage
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
from floworch.emulator.filters import (
    MessageAction,
    MessagePredicate,
    compile_rule_action,
    compile_rule_filter,
)
from floworch.emulator.message_store import EntityStore, StorePolicy, TimerQueue
from floworch.runtime.servicebus.topology.model import new_subscription_rules

DEAD_LETTER_SUFFIX = "$deadletterqueue"


def _ms(value: timedelta | None) -> int | None:
    return None if value is None else int(value / timedelta(milliseconds=1))


def _now() -> datetime:
    return datetime.now(UTC)


class DuplicateDetector:
    """Message ids seen within a sliding window (Service Bus duplicate detection)."""

    def __init__(self, window: timedelta) -> None:
        self.window_ms = _ms(window) or 0
        self._seen: OrderedDict[str, int] = OrderedDict()

    def seen_before(self, message_id: str, now_ms: int) -> bool:
        """Whether ``message_id`` was accepted within the window; records it when not."""
        while self._seen:
            oldest, expires = next(iter(self._seen.items()))
            if expires > now_ms:
                break
            del self._seen[oldest]
        if message_id in self._seen:
            return True
        self._seen[message_id] = now_ms + self.window_ms
        return False


@dataclass(eq=False)
class ScheduledMessage:
    """A message waiting for its scheduled enqueue time on a queue or topic."""

    sequence_number: int
    message: AmqpMessage
    enqueue_at_ms: int


@dataclass(eq=False, kw_only=True)
class SendTarget:
    """What a sender link attaches to: a queue or a topic."""

    path: str
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    scheduled: dict[int, ScheduledMessage] = field(default_factory=dict)
    deduplicator: DuplicateDetector | None = None
    _sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_sequence_number(self) -> int:
        """A new sequence number, unique within this queue or topic."""
        return next(self._sequence)


@dataclass(eq=False, kw_only=True)
class QueueEntity(SendTarget):
    """A queue: a send target with one store."""

    settings: QueueSettings
    store: EntityStore


@dataclass(frozen=True)
class CompiledRule:
    """A subscription rule with its filter and action compiled."""

    settings: RuleSettings
    matches: MessagePredicate
    action: MessageAction | None


@dataclass(eq=False, kw_only=True)
class SubscriptionEntity:
    """A subscription: a store fed by its topic through its rules."""

    settings: SubscriptionSettings
    store: EntityStore
    rules: dict[str, CompiledRule] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)


@dataclass(eq=False, kw_only=True)
class TopicEntity(SendTarget):
    """A topic: a send target fanning out to its subscriptions."""

    settings: TopicSettings
    subscriptions: dict[str, SubscriptionEntity] = field(default_factory=dict)


def _queue_policy(s: QueueSettings | SubscriptionSettings) -> StorePolicy:
    return StorePolicy(
        lock_duration_ms=_ms(s.lock_duration) or 1,
        max_delivery_count=s.max_delivery_count,
        default_ttl_ms=_ms(s.default_message_ttl),
        dead_letter_on_expiration=s.dead_lettering_on_message_expiration,
    )


def compile_rule(settings: RuleSettings) -> CompiledRule:
    """Compile a rule's filter and action (raises the filter module's errors on bad SQL)."""
    action = None if settings.action is None else compile_rule_action(settings.action)
    return CompiledRule(settings, compile_rule_filter(settings.filter), action)


class EntityRegistry:
    """Every entity of the emulator; the reactor thread's implementation of ManagementBackend.

    Args:
        timers: Shared deadline queue for the stores' lock and TTL timers.
        on_available: Called with a store when messages may have become available in it.
    """

    def __init__(self, timers: TimerQueue, on_available: Callable[[EntityStore], None]) -> None:
        self._timers = timers
        self._on_available = on_available
        self._queues: dict[str, QueueEntity] = {}
        self._topics: dict[str, TopicEntity] = {}
        self._stores: dict[str, EntityStore] = {}

    # --- lookups for the AMQP side --------------------------------------------------------

    def send_target(self, path: str) -> QueueEntity | TopicEntity:
        """The queue or topic a sender addresses (case-insensitive)."""
        key = entity_key(path)
        target = self._queues.get(key) or self._topics.get(key)
        if target is None:
            raise EntityNotFound("entity", path)
        return target

    def receive_store(self, path: str) -> EntityStore:
        """The store a receiver addresses: queue, subscription or a ``$DeadLetterQueue``."""
        store = self._stores.get(entity_key(path))
        if store is None:
            raise EntityNotFound("entity", path)
        return store

    def _new_stores(self, path: str, policy: StorePolicy) -> EntityStore:
        dead = EntityStore(
            f"{path}/$DeadLetterQueue", StorePolicy(), self._timers, self._on_available
        )
        store = EntityStore(path, policy, self._timers, self._on_available, dead)
        self._stores[entity_key(path)] = store
        self._stores[entity_key(path, DEAD_LETTER_SUFFIX)] = dead
        return store

    def _drop_stores(self, store: EntityStore) -> None:
        self._stores.pop(entity_key(store.path), None)
        if store.dead_letter_store is not None:
            self._stores.pop(entity_key(store.dead_letter_store.path), None)
            store.dead_letter_store.purge()
        store.purge()

    # --- queues ---------------------------------------------------------------------------

    def create_queue(self, settings: QueueSettings) -> QueueSettings:
        key = entity_key(settings.name)
        if key in self._queues or key in self._topics:
            raise EntityAlreadyExists("queue", settings.name)
        self._queues[key] = QueueEntity(
            path=settings.name,
            settings=settings,
            store=self._new_stores(settings.name, _queue_policy(settings)),
            deduplicator=self._deduplicator(settings),
        )
        return settings

    def _queue(self, name: str) -> QueueEntity:
        queue = self._queues.get(entity_key(name))
        if queue is None:
            raise EntityNotFound("queue", name)
        return queue

    def get_queue(self, name: str) -> QueueSettings:
        return self._queue(name).settings

    def update_queue(self, settings: QueueSettings) -> QueueSettings:
        queue = self._queue(settings.name)
        settings = replace(settings, name=queue.settings.name)
        queue.settings = settings
        queue.store.policy = _queue_policy(settings)
        queue.deduplicator = self._deduplicator(settings, queue.deduplicator)
        queue.updated_at = _now()
        return settings

    def delete_queue(self, name: str) -> None:
        queue = self._queue(name)
        del self._queues[entity_key(name)]
        self._drop_stores(queue.store)

    def list_queues(self) -> Sequence[QueueSettings]:
        return [q.settings for q in self._queues.values()]

    def get_queue_runtime_info(self, name: str) -> EntityRuntimeInfo:
        queue = self._queue(name)
        return EntityRuntimeInfo(
            created_at=queue.created_at,
            updated_at=queue.updated_at,
            accessed_at=_now(),
            active_message_count=queue.store.message_count,
            dead_letter_message_count=queue.store.dead_letter_count,
            scheduled_message_count=len(queue.scheduled),
            size_in_bytes=queue.store.size_in_bytes,
        )

    @staticmethod
    def _deduplicator(
        settings: QueueSettings | TopicSettings, current: DuplicateDetector | None = None
    ) -> DuplicateDetector | None:
        if not settings.requires_duplicate_detection:
            return None
        window = settings.duplicate_detection_history_time_window
        if current is not None and current.window_ms == _ms(window):
            return current
        return DuplicateDetector(window)

    # --- topics ---------------------------------------------------------------------------

    def create_topic(self, settings: TopicSettings) -> TopicSettings:
        key = entity_key(settings.name)
        if key in self._topics or key in self._queues:
            raise EntityAlreadyExists("topic", settings.name)
        self._topics[key] = TopicEntity(
            path=settings.name, settings=settings, deduplicator=self._deduplicator(settings)
        )
        return settings

    def topic(self, name: str) -> TopicEntity:
        """The topic named ``name``; raises :class:`EntityNotFound`."""
        topic = self._topics.get(entity_key(name))
        if topic is None:
            raise EntityNotFound("topic", name)
        return topic

    def get_topic(self, name: str) -> TopicSettings:
        return self.topic(name).settings

    def update_topic(self, settings: TopicSettings) -> TopicSettings:
        topic = self.topic(settings.name)
        settings = replace(settings, name=topic.settings.name)
        topic.settings = settings
        topic.deduplicator = self._deduplicator(settings, topic.deduplicator)
        topic.updated_at = _now()
        return settings

    def delete_topic(self, name: str) -> None:
        topic = self.topic(name)
        for sub in topic.subscriptions.values():
            self._drop_stores(sub.store)
        del self._topics[entity_key(name)]

    def list_topics(self) -> Sequence[TopicSettings]:
        return [t.settings for t in self._topics.values()]

    def get_topic_runtime_info(self, name: str) -> EntityRuntimeInfo:
        topic = self.topic(name)
        return EntityRuntimeInfo(
            created_at=topic.created_at,
            updated_at=topic.updated_at,
            accessed_at=_now(),
            scheduled_message_count=len(topic.scheduled),
            size_in_bytes=sum(s.store.size_in_bytes for s in topic.subscriptions.values()),
            subscription_count=len(topic.subscriptions),
        )

    # --- subscriptions --------------------------------------------------------------------

    def create_subscription(self, settings: SubscriptionSettings) -> SubscriptionSettings:
        topic = self.topic(settings.topic_name)
        key = entity_key(settings.name)
        if key in topic.subscriptions:
            raise EntityAlreadyExists(
                "subscription", f"{settings.topic_name}/Subscriptions/{settings.name}"
            )
        settings = replace(settings, topic_name=topic.settings.name)
        path = f"{topic.settings.name}/Subscriptions/{settings.name}"
        sub = SubscriptionEntity(
            settings=settings, store=self._new_stores(path, _queue_policy(settings))
        )
        for default in new_subscription_rules():
            rule = RuleSettings(
                topic_name=topic.settings.name, subscription_name=settings.name, **vars(default)
            )
            sub.rules[entity_key(rule.name)] = compile_rule(rule)
        topic.subscriptions[key] = sub
        return settings

    def subscription(self, topic_name: str, name: str) -> SubscriptionEntity:
        """The subscription ``topic_name/name``; raises :class:`EntityNotFound`."""
        sub = self.topic(topic_name).subscriptions.get(entity_key(name))
        if sub is None:
            raise EntityNotFound("subscription", f"{topic_name}/Subscriptions/{name}")
        return sub

    def get_subscription(self, topic_name: str, name: str) -> SubscriptionSettings:
        return self.subscription(topic_name, name).settings

    def update_subscription(self, settings: SubscriptionSettings) -> SubscriptionSettings:
        sub = self.subscription(settings.topic_name, settings.name)
        settings = replace(settings, topic_name=sub.settings.topic_name, name=sub.settings.name)
        sub.settings = settings
        sub.store.policy = _queue_policy(settings)
        sub.updated_at = _now()
        return settings

    def delete_subscription(self, topic_name: str, name: str) -> None:
        sub = self.subscription(topic_name, name)
        del self.topic(topic_name).subscriptions[entity_key(name)]
        self._drop_stores(sub.store)

    def list_subscriptions(self, topic_name: str) -> Sequence[SubscriptionSettings]:
        return [s.settings for s in self.topic(topic_name).subscriptions.values()]

    def get_subscription_runtime_info(self, topic_name: str, name: str) -> EntityRuntimeInfo:
        sub = self.subscription(topic_name, name)
        return EntityRuntimeInfo(
            created_at=sub.created_at,
            updated_at=sub.updated_at,
            accessed_at=_now(),
            active_message_count=sub.store.message_count,
            dead_letter_message_count=sub.store.dead_letter_count,
            size_in_bytes=sub.store.size_in_bytes,
        )

    # --- rules ----------------------------------------------------------------------------

    def create_rule(self, settings: RuleSettings) -> RuleSettings:
        sub = self.subscription(settings.topic_name, settings.subscription_name)
        key = entity_key(settings.name)
        if key in sub.rules:
            raise EntityAlreadyExists(
                "rule",
                f"{settings.topic_name}/Subscriptions/{settings.subscription_name}"
                f"/Rules/{settings.name}",
            )
        settings = replace(
            settings,
            topic_name=sub.settings.topic_name,
            subscription_name=sub.settings.name,
        )
        sub.rules[key] = compile_rule(settings)
        return settings

    def _rule(self, topic_name: str, subscription_name: str, name: str) -> CompiledRule:
        rule = self.subscription(topic_name, subscription_name).rules.get(entity_key(name))
        if rule is None:
            raise EntityNotFound(
                "rule", f"{topic_name}/Subscriptions/{subscription_name}/Rules/{name}"
            )
        return rule

    def get_rule(self, topic_name: str, subscription_name: str, name: str) -> RuleSettings:
        return self._rule(topic_name, subscription_name, name).settings

    def update_rule(self, settings: RuleSettings) -> RuleSettings:
        current = self._rule(settings.topic_name, settings.subscription_name, settings.name)
        settings = replace(
            settings,
            topic_name=current.settings.topic_name,
            subscription_name=current.settings.subscription_name,
            name=current.settings.name,
        )
        sub = self.subscription(settings.topic_name, settings.subscription_name)
        sub.rules[entity_key(settings.name)] = compile_rule(settings)
        return settings

    def delete_rule(self, topic_name: str, subscription_name: str, name: str) -> None:
        self._rule(topic_name, subscription_name, name)
        del self.subscription(topic_name, subscription_name).rules[entity_key(name)]

    def list_rules(self, topic_name: str, subscription_name: str) -> Sequence[RuleSettings]:
        return [r.settings for r in self.subscription(topic_name, subscription_name).rules.values()]
