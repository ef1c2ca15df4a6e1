"""The shared contract suite of the topology port
(:class:`~floworch.runtime.servicebus.topology.backend.NamespaceBackend`).

Every backend passes it: :class:`~floworch.runtime.servicebus.topology.admin.AdminNamespace`
against the emulator's management API, :class:`~floworch.runtime.servicebus.topology.arm.
ArmNamespace` against :class:`~floworch.testing.arm_fake.ArmServiceBusFake`, and
:class:`~floworch.runtime.servicebus.topology.memory.InMemoryNamespace`. Subclass
:class:`NamespaceBackendContract` and provide a ``backend`` fixture::

    class TestMyBackend(NamespaceBackendContract):
        @pytest.fixture
        def backend(self):
            return MyNamespace(...)

Tests give their entities names of their own, so one namespace may serve every test of a module.
What the suite expects of a new entity comes from the shared model (:func:`~floworch.runtime.
servicebus.topology.model.described`, :func:`~floworch.runtime.servicebus.topology.model.
new_subscription_rules`), so a backend whose defaults, "never" or ``$Default`` rule differ fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

import pytest

from floworch.runtime.servicebus.topology.apply import apply_topology, plan_topology
from floworch.runtime.servicebus.topology.backend import NamespaceBackend
from floworch.runtime.servicebus.topology.desired import desired_topology
from floworch.runtime.servicebus.topology.errors import EntityExistsError, EntityNotFoundError
from floworch.runtime.servicebus.topology.model import (
    CorrelationFilterSpec,
    QueueSpec,
    RuleSpec,
    SqlFilterSpec,
    SubscriptionSpec,
    TopicSpec,
    described,
    entity_key,
    new_subscription_rules,
)
from floworch.runtime.servicebus.topology.plan import Action
from floworch.runtime.servicebus.topology.settings import TopologySettings

_N = TypeVar("_N", QueueSpec, TopicSpec, SubscriptionSpec)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _only(found: Sequence[_N], name: str) -> _N:
    matches = [item for item in found if entity_key(item.name) == entity_key(name)]
    assert len(matches) == 1, f"{name!r} listed {len(matches)} times in {found!r}"
    return matches[0]


class _Flow:
    """The least a flow offers the topology (an id and no triggers)."""

    def __init__(self, flow_id: str) -> None:
        self.id = flow_id
        self.triggers: dict[str, object] = {}


class NamespaceBackendContract:
    """The behaviour every topology backend shares: Service Bus's, as the shared model says."""

    @pytest.fixture
    def backend(self) -> NamespaceBackend:
        raise NotImplementedError("a subclass provides the backend under test")

    @pytest.fixture
    def topic(self, backend: NamespaceBackend) -> str:
        name = _name("t")
        backend.create_topic(TopicSpec(name=name))
        return name

    # --- what a new entity is --------------------------------------------------------------------

    def test_a_created_queue_lists_with_service_bus_defaults(
        self, backend: NamespaceBackend
    ) -> None:
        wanted = QueueSpec(name=_name("q"), requires_duplicate_detection=True)
        backend.create_queue(wanted)
        listed = _only(backend.list_queues(), wanted.name)
        assert listed == described(wanted)
        assert listed.default_message_ttl is None  # "never", however the backend spells it
        assert listed.lock_duration == timedelta(minutes=1)

    def test_a_created_topic_and_subscription_list_with_service_bus_defaults(
        self, backend: NamespaceBackend, topic: str
    ) -> None:
        assert _only(backend.list_topics(), topic) == described(TopicSpec(name=topic))
        wanted = SubscriptionSpec(name="sub", lock_duration=timedelta(seconds=30))
        backend.create_subscription(topic, wanted)
        assert _only(backend.list_subscriptions(topic), "sub") == described(wanted)

    def test_a_new_subscription_has_exactly_the_match_all_default_rule(
        self, backend: NamespaceBackend, topic: str
    ) -> None:
        backend.create_subscription(topic, SubscriptionSpec(name="fresh"))
        assert list(backend.list_rules(topic, "fresh")) == list(new_subscription_rules())

    def test_durations_round_trip_and_never_reads_back_as_none(
        self, backend: NamespaceBackend
    ) -> None:
        ttl = timedelta(days=1, hours=2, seconds=3.5)
        day = QueueSpec(name=_name("q"), default_message_ttl=ttl)
        backend.create_queue(day)
        assert _only(backend.list_queues(), day.name).default_message_ttl == ttl
        window = timedelta(seconds=45)
        backend.update_queue(
            QueueSpec(name=day.name, duplicate_detection_history_time_window=window)
        )
        listed = _only(backend.list_queues(), day.name)
        assert (listed.duplicate_detection_history_time_window, listed.default_message_ttl) == (
            window,
            ttl,
        )

    # --- create and update ---------------------------------------------------------------------

    def test_creating_what_exists_raises_entity_exists_names_compared_case_insensitively(
        self, backend: NamespaceBackend, topic: str
    ) -> None:
        queue = _name("q")
        backend.create_queue(QueueSpec(name=queue))
        attempts: list[Callable[[], None]] = [
            lambda: backend.create_queue(QueueSpec(name=queue.upper())),
            lambda: backend.create_topic(TopicSpec(name=queue)),  # one name space
            lambda: backend.create_queue(QueueSpec(name=topic)),
        ]
        backend.create_subscription(topic, SubscriptionSpec(name="s"))
        attempts.append(lambda: backend.create_subscription(topic, SubscriptionSpec(name="S")))
        attempts.append(lambda: backend.create_rule(topic, "s", RuleSpec(name="$default")))
        for attempt in attempts:
            with pytest.raises(EntityExistsError):
                attempt()

    def test_an_update_changes_only_the_settings_it_gives(
        self, backend: NamespaceBackend, topic: str
    ) -> None:
        queue = QueueSpec(
            name=_name("q"), lock_duration=timedelta(seconds=30), max_delivery_count=3
        )
        backend.create_queue(queue)
        backend.update_queue(QueueSpec(name=queue.name.upper(), max_delivery_count=7))
        listed = _only(backend.list_queues(), queue.name)
        assert listed.name == queue.name  # the name keeps the case it was created with
        assert (listed.lock_duration, listed.max_delivery_count) == (timedelta(seconds=30), 7)

        sub = SubscriptionSpec(
            name="s", max_delivery_count=4, dead_lettering_on_message_expiration=True
        )
        backend.create_subscription(topic, sub)
        backend.update_subscription(
            topic, SubscriptionSpec(name="s", lock_duration=timedelta(seconds=20))
        )
        after = _only(backend.list_subscriptions(topic), "s")
        assert after == replace(described(sub), lock_duration=timedelta(seconds=20))

        window = timedelta(minutes=3)
        backend.update_topic(TopicSpec(name=topic, duplicate_detection_history_time_window=window))
        listed_topic = _only(backend.list_topics(), topic)
        assert listed_topic == described(
            TopicSpec(name=topic, duplicate_detection_history_time_window=window)
        )

    def test_what_is_missing_raises_entity_not_found(
        self, backend: NamespaceBackend, topic: str
    ) -> None:
        missing = _name("missing")
        backend.create_subscription(topic, SubscriptionSpec(name="s"))
        attempts: list[Callable[[], object]] = [
            lambda: backend.update_queue(QueueSpec(name=missing, max_delivery_count=2)),
            lambda: backend.update_topic(TopicSpec(name=missing, default_message_ttl=None)),
            lambda: backend.update_subscription(
                topic, SubscriptionSpec(name="nope", max_delivery_count=2)
            ),
            lambda: backend.list_subscriptions(missing),
            lambda: backend.list_rules(topic, "nope"),
            lambda: backend.create_subscription(missing, SubscriptionSpec(name="s")),
            lambda: backend.update_rule(topic, "s", RuleSpec(name="nope")),
            lambda: backend.delete_rule(topic, "s", "nope"),
        ]
        for attempt in attempts:
            with pytest.raises(EntityNotFoundError):
                attempt()

    # --- rules ---------------------------------------------------------------------------------

    def test_rules_are_added_replaced_and_removed(
        self, backend: NamespaceBackend, topic: str
    ) -> None:
        backend.create_subscription(topic, SubscriptionSpec(name="s"))
        # Correlation property values are strings here: ARM carries no other type.
        route = RuleSpec(
            name="route",
            filter=CorrelationFilterSpec(subject="order", properties={"FlowId": "orders"}),
        )
        sql = RuleSpec(name="big", filter=SqlFilterSpec("amount > 10"), action="SET user.big = 1")
        backend.create_rule(topic, "s", route)
        backend.create_rule(topic, "s", sql)
        backend.delete_rule(topic, "s", "$DEFAULT")
        assert {r.name: r for r in backend.list_rules(topic, "s")} == {"route": route, "big": sql}
        replaced = replace(sql, filter=SqlFilterSpec("amount > 20"), action=None)
        backend.update_rule(topic, "s", replace(replaced, name="BIG"))
        assert {r.name: r for r in backend.list_rules(topic, "s")} == {
            "route": route,
            "big": replaced,
        }

    # --- the topology manager over the backend -------------------------------------------------

    def test_apply_is_idempotent_and_repairs_drift(self, backend: NamespaceBackend) -> None:
        suffix = uuid.uuid4().hex[:8]
        names = TopologySettings(
            steps_topic=f"steps-{suffix}",
            triggers_topic=f"triggers-{suffix}",
            cron_queue=f"cron-{suffix}",
        )
        desired = desired_topology([_Flow("orders"), _Flow("billing")], names)
        first = apply_topology(backend, desired)
        assert first.count(Action.CREATE) == 8
        assert not plan_topology(backend, desired).pending
        backend.update_subscription(
            names.steps_topic, SubscriptionSpec(name="flow-orders", max_delivery_count=2)
        )
        backend.delete_rule(names.triggers_topic, "flow-billing", "flow")
        drift = plan_topology(backend, desired)
        assert [(c.action, c.path) for c in drift.changes] == [
            (Action.UPDATE, f"{names.steps_topic}/subscriptions/flow-orders"),
            (Action.ADD, f"{names.triggers_topic}/subscriptions/flow-billing/rules/flow"),
        ]
        apply_topology(backend, desired)
        assert not plan_topology(backend, desired).pending
