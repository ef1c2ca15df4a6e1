"""topology/servicebus.json: loading, defaults, every problem reported with its JSON path."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from floworch.emulator.entities import (
    CorrelationFilter,
    QueueSettings,
    SqlFilter,
    TrueFilter,
    load_topology,
)
from floworch.emulator.memory_backend import InMemoryManagementBackend
from floworch.emulator.topology import SCHEMA_PATH, TopologyError, topology_json_schema

EXAMPLE: dict[str, Any] = {
    "queues": [
        {
            "name": "orders",
            "lockDuration": "PT30S",
            "maxDeliveryCount": 5,
            "defaultMessageTimeToLive": "P1D",
            "deadLetteringOnMessageExpiration": True,
            "requiresDuplicateDetection": True,
            "duplicateDetectionHistoryTimeWindow": 120,
            "requiresSession": True,
        },
        {"name": "plain"},
    ],
    "topics": [
        {
            "name": "events",
            "subscriptions": [
                {"name": "all"},
                {
                    "name": "big-orders",
                    "lockDuration": 45,
                    "rules": [
                        {
                            "name": "orders",
                            "correlationFilter": {"label": "order", "properties": {"t": "a"}},
                        },
                        {"name": "big", "sqlFilter": "amount > 100", "action": "SET big = TRUE"},
                    ],
                },
            ],
        }
    ],
}


def test_loads_entities_with_service_bus_defaults() -> None:
    topology = load_topology(EXAMPLE)
    orders, plain = topology.queues
    assert orders.lock_duration == timedelta(seconds=30)
    assert orders.max_delivery_count == 5
    assert orders.default_message_ttl == timedelta(days=1)
    assert orders.duplicate_detection_history_time_window == timedelta(minutes=2)
    assert orders.requires_session and orders.dead_lettering_on_message_expiration
    assert plain == QueueSettings(name="plain")
    assert [t.name for t in topology.topics] == ["events"]
    assert [s.name for s in topology.subscriptions] == ["all", "big-orders"]
    assert topology.subscriptions[1].lock_duration == timedelta(seconds=45)
    rules = {(r.subscription_name, r.name): r for r in topology.rules}
    assert rules[("all", "$Default")].filter == TrueFilter()
    assert rules[("big-orders", "orders")].filter == CorrelationFilter(
        subject="order", properties={"t": "a"}
    )
    assert rules[("big-orders", "big")].filter == SqlFilter("amount > 100")
    assert rules[("big-orders", "big")].action == "SET big = TRUE"
    assert ("big-orders", "$Default") not in rules


def test_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "servicebus.json"
    path.write_text(json.dumps(EXAMPLE), encoding="utf-8")
    assert load_topology(path) == load_topology(EXAMPLE)
    assert load_topology(str(path)) == load_topology(EXAMPLE)


def test_every_problem_is_reported_with_its_path() -> None:
    bad: dict[str, list[dict[str, Any]]] = {
        "queues": [
            {"name": "q", "lockDuration": "soon", "maxDeliveryCount": 0},
            {"name": "Q"},
            {"name": "x", "forwardTo": "nowhere", "colour": "red"},
        ],
        "topics": [
            {
                "name": "t",
                "subscriptions": [
                    {
                        "name": "s",
                        "rules": [
                            {"name": "r", "sqlFilter": "a = "},
                            {"name": "R", "sqlFilter": "a = 1", "action": "SET"},
                        ],
                    },
                    {"name": "bad name!"},
                ],
            }
        ],
    }
    with pytest.raises(TopologyError) as caught:
        load_topology(bad)
    paths = {issue.path for issue in caught.value.issues}
    assert {
        "$.queues[0].lockDuration",
        "$.queues[0].maxDeliveryCount",
        "$.queues[2].colour",
    } <= paths
    # structural errors stop before semantic checks; fix them and the rest appears
    bad["queues"][0] = {"name": "q"}
    del bad["queues"][2]["colour"]
    with pytest.raises(TopologyError) as caught:
        load_topology(bad)
    paths = {issue.path for issue in caught.value.issues}
    assert paths == {
        "$.queues[1].name",
        "$.queues[2].forwardTo",
        "$.topics[0].subscriptions[0].rules[0].sqlFilter",
        "$.topics[0].subscriptions[0].rules[1].name",
        "$.topics[0].subscriptions[0].rules[1].action",
        "$.topics[0].subscriptions[1].name",
    }
    assert "column 5" in str(caught.value)


def test_invalid_json_file(tmp_path: Path) -> None:
    path = tmp_path / "servicebus.json"
    path.write_text("{\n  'queues': []\n}", encoding="utf-8")
    with pytest.raises(TopologyError, match=r"line 2"):
        load_topology(path)


def test_both_filters_on_one_rule_is_an_error() -> None:
    doc = {
        "topics": [
            {
                "name": "t",
                "subscriptions": [
                    {
                        "name": "s",
                        "rules": [{"name": "r", "sqlFilter": "1=1", "correlationFilter": {}}],
                    }
                ],
            }
        ]
    }
    with pytest.raises(TopologyError, match="not both"):
        load_topology(doc)


def test_apply_creates_then_updates() -> None:
    backend = InMemoryManagementBackend()
    topology = load_topology(EXAMPLE)
    topology.apply(backend)
    topology.apply(backend)  # idempotent
    assert [q.name for q in backend.list_queues()] == ["orders", "plain"]
    assert [r.name for r in backend.list_rules("events", "big-orders")] == ["orders", "big"]
    assert [r.name for r in backend.list_rules("events", "all")] == ["$Default"]


def test_shipped_schema_matches_the_models() -> None:
    shipped = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert shipped == topology_json_schema(), "run python -m floworch.emulator.topology"


def test_repository_topology_file_is_valid() -> None:
    path = Path(__file__).parents[3] / "topology" / "servicebus.json"
    if not path.exists():
        pytest.skip("the repository has no topology/servicebus.json yet")
    load_topology(path)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"queues": [{"name": "q", "lockDuration": NaN}]}', "NaN is not JSON"),
        ('{"queues": [{"name": "q", "lockDuration": Infinity}]}', "Infinity is not JSON"),
        ('{"queues": [{"name": "q", "lockDuration": 1e999}]}', "too large"),
    ],
)
def test_nan_and_infinity_are_not_json(tmp_path: Path, text: str, why: str) -> None:
    # Issue 16.11: json.loads took them, and Infinity then crashed the duration conversion.
    path = tmp_path / "t.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TopologyError, match=why):
        load_topology(path)


def test_a_duration_too_long_for_python_is_never_not_a_crash() -> None:
    # The one duration codec: numbers of seconds past TimeSpan.MaxValue are Service Bus's never.
    loaded = load_topology({"queues": [{"name": "q", "defaultMessageTimeToLive": 1e300}]})
    assert loaded.queues[0].default_message_ttl is None
    with pytest.raises(TopologyError, match=r"\$\.queues\[0\]\.lockDuration"):
        load_topology({"queues": [{"name": "q", "lockDuration": -1}]})
