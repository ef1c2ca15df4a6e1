"""The Bicep entity loops against a topology that uses every key of the topology schema.

The repository's topology/servicebus.json uses only some keys (and the `servicebus` work may
change its entities at any time), so the templates are also checked against a document that
exercises every entity setting, every filter kind and both duration forms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from floworch.emulator.entities import load_topology
from tests.unit.infra import policies
from tests.unit.infra.bicep_source import Sources
from tests.unit.infra.conftest import ROOT, TOPOLOGY
from tests.unit.infra.test_bicep_policies import deploy


def schema_path() -> Path:
    """The schema the repository's topology file names in ``$schema``."""
    document = json.loads((ROOT / TOPOLOGY).read_text(encoding="utf-8"))
    name: str = document["$schema"]
    return (ROOT / TOPOLOGY).parent / name


RICH_TOPOLOGY: dict[str, Any] = {
    "$schema": "servicebus.schema.json",
    "topics": [
        {
            "name": "flow-steps",
            "defaultMessageTimeToLive": "P7D",
            "requiresDuplicateDetection": True,
            "duplicateDetectionHistoryTimeWindow": 600,
            "maxSizeInMegabytes": 2048,
            "autoDeleteOnIdle": "P30D",
            "subscriptions": [
                {
                    "name": "flow-orders",
                    "lockDuration": 45,
                    "maxDeliveryCount": 7,
                    "defaultMessageTimeToLive": "PT12H",
                    "deadLetteringOnMessageExpiration": True,
                    "deadLetteringOnFilterEvaluationExceptions": False,
                    "requiresSession": False,
                    "autoDeleteOnIdle": "P10D",
                    "forwardTo": "audit",
                    "forwardDeadLetteredMessagesTo": "audit",
                    "rules": [
                        {
                            "name": "flow",
                            "correlationFilter": {
                                "correlationId": "c",
                                "messageId": "m",
                                "to": "t",
                                "replyTo": "r",
                                "subject": "s",
                                "sessionId": "sid",
                                "replyToSessionId": "rsid",
                                "contentType": "application/json",
                                "properties": {"FlowId": "orders", "Priority": 2, "Urgent": True},
                            },
                        },
                        {"name": "big", "sqlFilter": "amount > 100", "action": "SET user.big = 1"},
                    ],
                },
                {"name": "everything"},
                {
                    "name": "named-default",
                    "rules": [
                        {"name": "first", "correlationFilter": {"label": "x"}},
                        {"name": "$Default", "sqlFilter": "1=1"},
                    ],
                },
                {"name": "catch-all-rule", "rules": [{"name": "all"}]},
            ],
        },
        {"name": "events"},
    ],
    "queues": [
        {
            "name": "audit",
            "lockDuration": "PT30S",
            "maxDeliveryCount": 3,
            "defaultMessageTimeToLive": 86400,
            "deadLetteringOnMessageExpiration": True,
            "requiresDuplicateDetection": True,
            "duplicateDetectionHistoryTimeWindow": "PT5M",
            "requiresSession": True,
            "maxSizeInMegabytes": 1024,
            "autoDeleteOnIdle": "P1D",
            "forwardTo": None,
            "forwardDeadLetteredMessagesTo": "events",
        },
        {"name": "flow-cron"},
    ],
}


def _keys_used(document: dict[str, Any]) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {
        "TopicDoc": set(),
        "SubscriptionDoc": set(),
        "RuleDoc": set(),
        "QueueDoc": set(),
        "CorrelationFilterDoc": set(),
    }
    for topic in document["topics"]:
        used["TopicDoc"] |= set(topic)
        for sub in topic.get("subscriptions", []):
            used["SubscriptionDoc"] |= set(sub)
            for rule in sub.get("rules", []):
                used["RuleDoc"] |= set(rule)
                used["CorrelationFilterDoc"] |= set(rule.get("correlationFilter") or {})
    for queue in document["queues"]:
        used["QueueDoc"] |= set(queue)
    return used


def test_the_rich_topology_is_valid_and_uses_every_schema_key() -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    jsonschema.validate(RICH_TOPOLOGY, schema)
    load_topology(RICH_TOPOLOGY)
    used = _keys_used(RICH_TOPOLOGY)
    for definition, keys in used.items():
        declared = set(schema["$defs"][definition]["properties"])
        assert declared - keys == set(), f"add {sorted(declared - keys)} of {definition} here"


def test_bicep_deploys_exactly_the_rich_topology(sources: Sources) -> None:
    rich = Sources({**sources.texts, TOPOLOGY: json.dumps(RICH_TOPOLOGY)})
    deployment = deploy(rich)
    assert policies.check_entities(deployment, RICH_TOPOLOGY) == []
    deployed = policies.deployed_entities(deployment)
    rules = "Microsoft.ServiceBus/namespaces/topics/subscriptions/rules"
    assert deployed[(rules, ("flow-steps", "flow-orders", "$Default"))]["correlationFilter"] == {
        "correlationId": "c",
        "messageId": "m",
        "to": "t",
        "replyTo": "r",
        "label": "s",
        "sessionId": "sid",
        "replyToSessionId": "rsid",
        "contentType": "application/json",
        "properties": {"FlowId": "orders", "Priority": 2, "Urgent": True},
    }
    assert deployed[(rules, ("flow-steps", "flow-orders", "big"))] == {
        "filterType": "SqlFilter",
        "sqlFilter": {"sqlExpression": "amount > 100"},
        "action": {"sqlExpression": "SET user.big = 1"},
    }
    assert (rules, ("flow-steps", "named-default", "first")) in deployed
    assert deployed[(rules, ("flow-steps", "catch-all-rule", "$Default"))] == {
        "filterType": "SqlFilter",
        "sqlFilter": {"sqlExpression": "1=1"},
    }
    subscription = deployed[
        ("Microsoft.ServiceBus/namespaces/topics/subscriptions", ("flow-steps", "flow-orders"))
    ]
    assert subscription["lockDuration"] == "PT45S"
    assert not any(
        key[1][:2] == ("flow-steps", "everything") and key[0] == rules for key in deployed
    )


def test_the_repository_topology_is_what_bicep_reads() -> None:
    module = (ROOT / "infra" / "bicep" / "modules" / "servicebus.bicep").read_text(encoding="utf-8")
    assert "loadJsonContent('../../../topology/servicebus.json')" in module
    assert (Path(ROOT) / TOPOLOGY).is_file()
