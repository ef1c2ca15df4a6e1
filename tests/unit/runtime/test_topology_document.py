"""The topology document: writing it, reading it back, and durations as it spells them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from floworch.runtime.servicebus.topology import (
    CorrelationFilterSpec,
    FalseFilterSpec,
    RuleSpec,
    SqlFilterSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    TopologyDocumentError,
    TrueFilterSpec,
    desired_topology,
    read_document,
    to_document,
)
from floworch.runtime.servicebus.topology.durations import (
    NEVER_THRESHOLD,
    format_duration,
    never_as_none,
    parse_duration,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(minutes=1), "PT1M"),
        (timedelta(minutes=10), "PT10M"),
        (timedelta(seconds=30), "PT30S"),
        (timedelta(seconds=0.5), "PT0.5S"),
        (timedelta(days=1, hours=2), "P1DT2H"),
        (timedelta(days=14), "P14D"),
        (timedelta(0), "PT0S"),
    ],
)
def test_durations_round_trip(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


def test_durations_accept_seconds_and_spot_never() -> None:
    assert parse_duration(90) == timedelta(seconds=90)
    assert parse_duration("PT01M00S") == timedelta(minutes=1)
    never = parse_duration("P10675199DT2H48M5.4775807S")
    assert never == NEVER_THRESHOLD
    assert never_as_none(never) is None
    for bad in ("soon", "P1Y", -1, True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_document_writes_only_managed_settings_and_rules() -> None:
    rules = (
        RuleSpec(name="c", filter=CorrelationFilterSpec(subject="s", properties={"k": 1})),
        RuleSpec(name="q", filter=SqlFilterSpec("a > 1"), action="SET b = 2"),
        RuleSpec(name="none", filter=FalseFilterSpec()),
        RuleSpec(name="all", filter=TrueFilterSpec()),
    )
    topology = Topology(
        topics=(
            TopicSpec(
                name="t",
                default_message_ttl=timedelta(days=1),
                subscriptions=(
                    SubscriptionSpec(name="s", max_delivery_count=3, rules=rules),
                    SubscriptionSpec(name="plain", rules=(RuleSpec(name="$Default"),)),
                ),
            ),
        )
    )
    assert to_document(topology) == {
        "topics": [
            {
                "name": "t",
                "defaultMessageTimeToLive": "P1D",
                "subscriptions": [
                    {
                        "name": "s",
                        "maxDeliveryCount": 3,
                        "rules": [
                            {
                                "name": "c",
                                "correlationFilter": {"subject": "s", "properties": {"k": 1}},
                            },
                            {"name": "q", "sqlFilter": "a > 1", "action": "SET b = 2"},
                            {"name": "none", "sqlFilter": "1=0"},
                            {"name": "all"},
                        ],
                    },
                    {"name": "plain"},
                ],
            }
        ],
        "queues": [],
    }
    assert read_document(to_document(topology)) == topology


def test_desired_topology_round_trips_through_the_document() -> None:
    from floworch.model import FlowManifest

    manifest = FlowManifest.model_validate(
        {
            "id": "a",
            "version": "1",
            "triggers": {"in": {"type": "ServiceBus", "queue": "orders"}},
            "steps": {"s": {"type": "X"}},
        }
    )
    desired = desired_topology([manifest])
    assert read_document(to_document(desired, schema="x.json")) == desired


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (
            {"queues": [{"name": "q", "lockDuration": "soon"}]},
            "$.queues[0].lockDuration",
            "ISO-8601",
        ),
        ({"queues": [{"name": "q", "forwardTo": "x"}]}, "$.queues[0].forwardTo", "does not manage"),
        ({"queues": [{"nam": "q"}]}, "$.queues[0].nam", "unknown key"),
        ({"queues": [{"name": "q"}, {"name": "Q"}]}, "$.queues[1].name", "also declared"),
        (
            {"topics": [{"name": "t", "subscriptions": [{"name": "s", "maxDeliveryCount": 0}]}]},
            "$.topics[0].subscriptions[0].maxDeliveryCount",
            "at least 1",
        ),
        (
            {
                "topics": [
                    {
                        "name": "t",
                        "subscriptions": [
                            {
                                "name": "s",
                                "rules": [
                                    {
                                        "name": "r",
                                        "sqlFilter": "a=1",
                                        "correlationFilter": {"to": "x"},
                                    }
                                ],
                            }
                        ],
                    }
                ]
            },
            "$.topics[0].subscriptions[0].rules[0]",
            "not both",
        ),
        ({"queues": "nope"}, "$.queues", "expected a list"),
    ],
)
def test_invalid_documents_name_each_problem_by_json_path(
    document: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(TopologyDocumentError) as caught:
        read_document(document)
    found = [issue for issue in caught.value.issues if issue.path == path]
    assert found, caught.value.issues
    assert message in found[0].message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"queues": [{"name": "q", "lockDuration": NaN}]}', "NaN is not JSON"),
        ('{"queues": [{"name": "q", "maxDeliveryCount": Infinity}]}', "Infinity is not JSON"),
        ('{"queues": [{"name": "q", "lockDuration": 1e999}]}', "too large"),
    ],
)
def test_a_document_with_nan_or_infinity_is_refused_as_not_json(
    tmp_path: Path, text: str, why: str
) -> None:
    # Issue 16.11: json.loads accepted these, and Infinity then overflowed a timedelta.
    path = tmp_path / "servicebus.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TopologyDocumentError, match=why):
        read_document(path)


def test_a_duration_too_long_for_python_is_an_issue_not_a_crash() -> None:
    document = {"queues": [{"name": "q", "defaultMessageTimeToLive": 1e300}]}
    (queue,) = read_document(document).queues
    assert queue.default_message_ttl is not None  # "never": Service Bus's longest duration
