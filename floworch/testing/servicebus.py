"""Pytest support for the local Service Bus emulator.

Use the ``servicebus_emulator`` fixture (register this module as a plugin, e.g.
``pytest_plugins = ["floworch.testing.servicebus"]``) or call :func:`start_servicebus_emulator`;
:func:`declare_flow_entities` creates what a worker running some flows receives from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.entities import (
    CorrelationFilter,
    ManagementBackend,
    QueueSettings,
    RuleFilter,
    RuleSettings,
    SqlFilter,
    SubscriptionSettings,
    TopicSettings,
    Topology,
)
from floworch.runtime.servicebus.names import (
    FLOW_RULE_NAME,
    UNROUTED_RULE,
    UNROUTED_SUBSCRIPTION,
    subscription_name,
)
from floworch.runtime.servicebus.topology.routing import FLOW_ID_PROPERTY, unrouted_sql


def start_servicebus_emulator(
    topology: Topology | Path | str | Mapping[str, Any] | None = None, **options: Any
) -> ServiceBusEmulator:
    """Start an emulator on free loopback ports; the caller must call ``stop()`` on it.

    Args:
        topology: Entities to declare (see :class:`ServiceBusEmulator`).
        **options: Further keyword options of :class:`ServiceBusEmulator`.
    """
    return ServiceBusEmulator(topology, **options).start()


def declare_flow_entities(
    backend: ManagementBackend,
    flow_ids: Iterable[str],
    *,
    steps_topic: str,
    triggers_topic: str,
    cron_queue: str,
    lock_duration: timedelta = timedelta(seconds=60),
    max_delivery_count: int = 10,
    duplicate_detection: bool = True,
) -> None:
    """Creates the entities of the Service Bus runtime for ``flow_ids`` as the topology manager
    would, with settings tests choose (lock durations below the 5 s Service Bus allows): the
    steps and triggers topics, each with a subscription per flow whose one rule routes its
    ``FlowId``, the triggers topic's catch-all ``unrouted``, and the cron queue."""
    ids = list(flow_ids)
    for topic in (steps_topic, triggers_topic):
        backend.create_topic(
            TopicSettings(name=topic, requires_duplicate_detection=duplicate_detection)
        )
        routes: list[tuple[str, str, RuleFilter]] = [
            (
                subscription_name(f),
                FLOW_RULE_NAME,
                CorrelationFilter(properties={FLOW_ID_PROPERTY: f}),
            )
            for f in ids
        ]
        if topic == triggers_topic:
            routes.append((UNROUTED_SUBSCRIPTION, UNROUTED_RULE, SqlFilter(unrouted_sql(ids))))
        for sub, rule, rule_filter in routes:
            backend.create_subscription(
                SubscriptionSettings(
                    topic_name=topic,
                    name=sub,
                    lock_duration=lock_duration,
                    max_delivery_count=max_delivery_count,
                )
            )
            backend.delete_rule(topic, sub, "$Default")
            backend.create_rule(
                RuleSettings(topic_name=topic, subscription_name=sub, name=rule, filter=rule_filter)
            )
    backend.create_queue(
        QueueSettings(
            name=cron_queue,
            requires_duplicate_detection=True,
            lock_duration=lock_duration,
            max_delivery_count=max_delivery_count,
        )
    )


@pytest.fixture
def servicebus_emulator() -> Iterator[ServiceBusEmulator]:
    """A started, empty emulator; declare entities with ``emulator.backend``."""
    emulator = start_servicebus_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()
