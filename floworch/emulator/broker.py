"""The broker: routing, sequence numbers, scheduling, duplicate detection and deadlines.

The broker owns the entity registry and the stores. It is single-threaded by design: the AMQP
reactor thread is its only caller (other threads marshal onto it, see
:mod:`floworch.emulator.server`). Time comes from an injectable clock in epoch seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

from floworch.emulator.amqp_message import AmqpMessage, apply_filter_changes, filter_view
from floworch.emulator.entities import EntityNotFound, TrueFilter
from floworch.emulator.entity_registry import (
    EntityRegistry,
    QueueEntity,
    ScheduledMessage,
    SubscriptionEntity,
    TopicEntity,
)
from floworch.emulator.filter_message import FilterMessage
from floworch.emulator.message_store import EntityStore, StoredMessage, TimerQueue

_log = logging.getLogger(__name__)

SendTarget = QueueEntity | TopicEntity


class Broker:
    """Routes messages into queues and subscriptions and runs the emulator's deadlines.

    Args:
        clock: Current time in epoch seconds (``time.time`` by default).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.timers = TimerQueue()
        # A dict keeps insertion order, so receivers are served in the order stores filled up.
        self._touched: dict[EntityStore, None] = {}
        self.registry = EntityRegistry(self.timers, self._mark_available)

    def now_ms(self) -> int:
        """The broker's current time in epoch milliseconds."""
        return int(self._clock() * 1000)

    def _mark_available(self, store: EntityStore) -> None:
        self._touched[store] = None

    def take_touched(self) -> list[EntityStore]:
        """Stores where messages became available since the last call."""
        if not self._touched:
            return []
        touched = list(self._touched)
        self._touched.clear()
        return touched

    def run_timers(self) -> None:
        """Fire every deadline that has passed (lock expiry, TTL, scheduled enqueue)."""
        self.timers.run_due(self.now_ms())

    def next_deadline_ms(self) -> int | None:
        """When :meth:`run_timers` next has work, in epoch milliseconds."""
        return self.timers.next_due()

    # --- sending --------------------------------------------------------------------------

    def publish(self, target: SendTarget, messages: Sequence[AmqpMessage]) -> None:
        """Accept messages sent to a queue or topic.

        A message whose id was seen within the duplicate-detection window is dropped silently,
        as Service Bus does. A message carrying a future ``x-opt-scheduled-enqueue-time`` is
        scheduled instead of enqueued.
        """
        now = self.now_ms()
        for message in messages:
            if self._is_duplicate(target, message, now):
                continue
            when = message.scheduled_enqueue_ms
            if when is not None and when > now:
                self._schedule(target, message, when)
            else:
                self._enqueue(target, target.next_sequence_number(), message, now)

    def schedule(self, target: SendTarget, message: AmqpMessage, enqueue_at_ms: int) -> int:
        """Schedule ``message`` for ``enqueue_at_ms``; returns its sequence number."""
        if self._is_duplicate(target, message, self.now_ms()):
            # Service Bus still answers with a number for a duplicate; it is never enqueued.
            return target.next_sequence_number()
        return self._schedule(target, message, enqueue_at_ms)

    def _schedule(self, target: SendTarget, message: AmqpMessage, enqueue_at_ms: int) -> int:
        seq = target.next_sequence_number()
        target.scheduled[seq] = ScheduledMessage(seq, message, enqueue_at_ms)
        self.timers.at(enqueue_at_ms, lambda now: self._fire_scheduled(target, seq, now))
        return seq

    def cancel_scheduled(self, target: SendTarget, sequence_numbers: Iterable[int]) -> None:
        """Cancel scheduled messages; unknown sequence numbers are ignored, as in Service Bus."""
        for seq in sequence_numbers:
            target.scheduled.pop(seq, None)

    def _fire_scheduled(self, target: SendTarget, seq: int, now_ms: int) -> None:
        scheduled = target.scheduled.pop(seq, None)
        if scheduled is not None:
            self._enqueue(target, seq, scheduled.message, now_ms)

    @staticmethod
    def _is_duplicate(target: SendTarget, message: AmqpMessage, now_ms: int) -> bool:
        detector = target.deduplicator
        if detector is None:
            return False
        message_id = message.message_id
        return message_id is not None and detector.seen_before(message_id, now_ms)

    def _enqueue(self, target: SendTarget, seq: int, message: AmqpMessage, now_ms: int) -> None:
        if isinstance(target, QueueEntity):
            target.store.enqueue(StoredMessage(seq, message, now_ms), now_ms)
            return
        view: FilterMessage | None = None
        for sub in target.subscriptions.values():
            copies, view = self._route(sub, message, seq, now_ms, view)
            for routed in copies:
                sub.store.enqueue(StoredMessage(seq, routed, now_ms), now_ms)

    def _route(
        self,
        sub: SubscriptionEntity,
        message: AmqpMessage,
        seq: int,
        now_ms: int,
        view: FilterMessage | None,
    ) -> tuple[list[AmqpMessage], FilterMessage | None]:
        """The copies ``sub`` receives: one if a rule without an action matches, plus one per
        matching rule with an action (Service Bus semantics), and the (lazily built) view."""
        plain = False
        copies: list[AmqpMessage] = []
        for rule in sub.rules.values():
            if not isinstance(rule.settings.filter, TrueFilter):
                if view is None:
                    view = filter_view(message, sequence_number=seq, enqueued_ms=now_ms)
                try:
                    matched = rule.matches(view)
                except Exception:
                    # A filter that fails on one message must not stop routing to others.
                    _log.warning("rule %s failed on message %d", rule.settings.name, seq)
                    matched = False
                if not matched:
                    continue
            if rule.action is None:
                plain = True
                continue
            if view is None:
                view = filter_view(message, sequence_number=seq, enqueued_ms=now_ms)
            changed = view.copy()
            try:
                rule.action(changed)
            except Exception:
                _log.warning("rule action %s failed on message %d", rule.settings.name, seq)
                plain = True
                continue
            copies.append(apply_filter_changes(message, view, changed))
        if plain:
            copies.insert(0, message)
        return copies, view

    # --- lookups --------------------------------------------------------------------------

    def send_target(self, path: str) -> SendTarget:
        """The queue or topic at ``path``; raises :class:`EntityNotFound`."""
        return self.registry.send_target(path)

    def receive_store(self, path: str) -> EntityStore:
        """The store a receiver at ``path`` reads; raises :class:`EntityNotFound`."""
        return self.registry.receive_store(path)

    def entity_for_management(self, path: str) -> tuple[SendTarget | None, EntityStore | None]:
        """The send target and store a ``<path>/$management`` node operates on.

        Raises:
            EntityNotFound: when neither exists.
        """
        target: SendTarget | None
        store: EntityStore | None
        try:
            target = self.registry.send_target(path)
        except EntityNotFound:
            target = None
        try:
            store = self.registry.receive_store(path)
        except EntityNotFound:
            store = None
        if target is None and store is None:
            raise EntityNotFound("entity", path)
        return target, store
