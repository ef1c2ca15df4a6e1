"""Capacity figures and advice: subscriptions per topic, operations per step, SQL filters that
a correlation filter would replace."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from floworch.runtime.servicebus.topology.document import filter_document
from floworch.runtime.servicebus.topology.model import (
    CorrelationFilterSpec,
    PropertyValue,
    RuleSpec,
    SqlFilterSpec,
    TopicSpec,
    Topology,
    TrueFilterSpec,
    entity_key,
    rule_path,
)
from floworch.runtime.servicebus.topology.plan import TopicCapacity

#: Service Bus allows at most this many subscriptions per topic (Standard and Premium).
MAX_SUBSCRIPTIONS_PER_TOPIC = 2000

_TERM = re.compile(
    r"\s*(?:(?P<scope>sys|user)\.)?(?P<name>\[[^\]]+\]|[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"
    r"(?P<value>'(?:[^']|'')*'|-?\d+(?:\.\d+)?(?![\w.])|true\b|false\b)",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
# System properties a correlation filter can match -> CorrelationFilterSpec attribute.
_SYSTEM = {
    "label": "subject",
    "subject": "subject",
    "to": "to",
    "replyto": "reply_to",
    "sessionid": "session_id",
    "replytosessionid": "reply_to_session_id",
    "contenttype": "content_type",
    "correlationid": "correlation_id",
    "messageid": "message_id",
}


def correlation_equivalent(expression: str) -> CorrelationFilterSpec | None:
    """The correlation filter that matches what ``expression`` matches, when the expression is
    only equalities joined by ``AND`` (``Region = 'eu' AND sys.Label = 'order'``); else None."""
    text = expression.strip()
    if text.startswith("(") and text.endswith(")") and "(" not in text[1:-1]:
        text = text[1:-1].strip()
    system: dict[str, str] = {}
    properties: dict[str, PropertyValue] = {}
    pos = 0
    while True:
        match = _TERM.match(text, pos)
        if match is None:
            return None
        name = match["name"].strip("[]")
        value = _literal(match["value"])
        if (match["scope"] or "user").lower() == "sys":
            attr = _SYSTEM.get(name.lower())
            if attr is None or not isinstance(value, str) or attr in system:
                return None
            system[attr] = value
        else:
            if name in properties:
                return None
            properties[name] = value
        pos = match.end()
        if pos == len(text.rstrip()):
            break
        joiner = _AND.match(text, pos)
        if joiner is None:
            return None
        pos = joiner.end()
    return CorrelationFilterSpec(properties=properties, **system)


def _literal(text: str) -> PropertyValue:
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return float(text) if "." in text else int(text)


def topic_capacity(topic: TopicSpec, existing_extra: int) -> TopicCapacity:
    """The capacity of ``topic`` once applied: its subscriptions plus ``existing_extra`` ones
    the namespace has and the topology does not declare."""
    return TopicCapacity(topic.name, len(topic.subscriptions) + existing_extra)


def capacity_warnings(
    topology: Topology, extra_subscriptions: dict[str, tuple[tuple[str, tuple[RuleSpec, ...]], ...]]
) -> tuple[str, ...]:
    """Advice about ``topology`` once applied.

    Args:
        topology: the wanted topology.
        extra_subscriptions: per topic name (as in the topology), the subscriptions the namespace
            has there that the topology does not declare, with their rules.
    """
    warnings: list[str] = []
    for topic in topology.topics:
        extras = extra_subscriptions.get(topic.name, ())
        total = len(topic.subscriptions) + len(extras)
        if total > MAX_SUBSCRIPTIONS_PER_TOPIC:
            warnings.append(
                f"topic {topic.name!r} would have {total:,} subscriptions; Service Bus allows "
                f"{MAX_SUBSCRIPTIONS_PER_TOPIC:,} per topic, so creating the rest will fail. "
                "Spread the flows over several steps topics (TopologySettings.steps_topic, one "
                "per deployment) or remove unused subscriptions"
            )
        for path, rule in _rules(topic, extras):
            if isinstance(rule.filter, SqlFilterSpec):
                equivalent = correlation_equivalent(rule.filter.expression)
                if equivalent is not None:
                    suggestion = json.dumps(filter_document(equivalent)["correlationFilter"])
                    warnings.append(
                        f"rule {path!r} uses the SQL filter {rule.filter.expression!r}; the "
                        f"correlation filter {suggestion} matches the same messages and is far "
                        "cheaper for Service Bus to evaluate on every message of the topic"
                    )
        for sub_name, rules in extras:
            if any(isinstance(rule.filter, TrueFilterSpec) for rule in rules):
                warnings.append(
                    f"subscription {topic.name}/subscriptions/{sub_name} is not in the topology "
                    "and matches every message: it receives a copy of every step message, "
                    "which piles up unless something receives it (left alone; delete it if it "
                    "is unused)"
                )
    return tuple(warnings)


def _rules(
    topic: TopicSpec, extras: tuple[tuple[str, tuple[RuleSpec, ...]], ...]
) -> Iterator[tuple[str, RuleSpec]]:
    seen: set[str] = set()
    pairs = [(sub.name, sub.rules) for sub in topic.subscriptions] + list(extras)
    for sub_name, rules in pairs:
        for rule in rules:
            key = entity_key(topic.name, sub_name, rule.name)
            if key not in seen:
                seen.add(key)
                yield rule_path(topic.name, sub_name, rule.name), rule
