"""Entity names and settings of the topology floworch needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from floworch.runtime.servicebus.config import ServiceBusSettings
from floworch.runtime.servicebus.names import (
    DEFAULT_CRON_QUEUE,
    DEFAULT_STEPS_TOPIC,
    DEFAULT_TRIGGERS_TOPIC,
)
from floworch.runtime.servicebus.topology.errors import TopologyError

# Service Bus limits (Standard and Premium tiers).
MIN_LOCK_DURATION = timedelta(seconds=5)
MAX_LOCK_DURATION = timedelta(minutes=5)
MIN_DUPLICATE_WINDOW = timedelta(seconds=20)
MAX_DUPLICATE_WINDOW = timedelta(days=7)


@dataclass(frozen=True, kw_only=True)
class TopologySettings:
    """Names and settings of the entities the Service Bus runtime uses.

    Attributes:
        steps_topic: topic of the step messages; one subscription per flow.
        cron_queue: queue of the self-perpetuating cron messages.
        triggers_topic: topic of run-starting messages (``ServiceBus`` triggers without
            ``queue``); one subscription per flow, and ``unrouted`` for the rest.
        lock_duration: peek-lock duration of queues and subscriptions (5 s to 5 min).
        max_delivery_count: deliveries before a message is dead-lettered.
        dead_lettering_on_message_expiration: dead-letter expired messages instead of dropping.
        default_message_ttl: message time to live; ``None`` leaves Service Bus's default (never).
        duplicate_detection_window: how long Service Bus remembers message ids (20 s to 7 days).

    Raises:
        TopologyError: a setting is outside what Service Bus accepts.
    """

    steps_topic: str = DEFAULT_STEPS_TOPIC
    cron_queue: str = DEFAULT_CRON_QUEUE
    triggers_topic: str = DEFAULT_TRIGGERS_TOPIC
    lock_duration: timedelta = timedelta(minutes=1)
    max_delivery_count: int = 10
    dead_lettering_on_message_expiration: bool = True
    default_message_ttl: timedelta | None = None
    duplicate_detection_window: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not MIN_LOCK_DURATION <= self.lock_duration <= MAX_LOCK_DURATION:
            problems.append(f"lock_duration {self.lock_duration} is not between 5 s and 5 min")
        if self.max_delivery_count < 1:
            problems.append(f"max_delivery_count {self.max_delivery_count} must be at least 1")
        if self.default_message_ttl is not None and self.default_message_ttl <= timedelta(0):
            problems.append(f"default_message_ttl {self.default_message_ttl} must be positive")
        if not MIN_DUPLICATE_WINDOW <= self.duplicate_detection_window <= MAX_DUPLICATE_WINDOW:
            problems.append(
                f"duplicate_detection_window {self.duplicate_detection_window} "
                "is not between 20 s and 7 days"
            )
        for attr in ("steps_topic", "cron_queue", "triggers_topic"):
            if not getattr(self, attr):
                problems.append(f"{attr} must not be empty")
        if problems:
            raise TopologyError("invalid TopologySettings: " + "; ".join(problems))

    @classmethod
    def for_runtime(cls, servicebus: ServiceBusSettings, **options: Any) -> TopologySettings:
        """The topology of a Service Bus runtime configured with ``servicebus`` (same entity
        names), with further ``options`` (``max_delivery_count=5``...)."""
        return cls(
            steps_topic=servicebus.steps_topic,
            cron_queue=servicebus.cron_queue,
            triggers_topic=servicebus.triggers_topic,
            **options,
        )
