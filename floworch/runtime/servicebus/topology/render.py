"""A plan as text for people and as JSON for tools."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from floworch.runtime.servicebus.topology.document import filter_document, json_value
from floworch.runtime.servicebus.topology.durations import format_duration
from floworch.runtime.servicebus.topology.model import (
    CorrelationFilterSpec,
    FalseFilterSpec,
    RuleSpec,
    SqlFilterSpec,
    TrueFilterSpec,
)
from floworch.runtime.servicebus.topology.plan import Action, Change, Plan, TopicCapacity

_SYMBOLS = {
    Action.CREATE: "+",
    Action.ADD: "+",
    Action.UPDATE: "~",
    Action.REPLACE: "~",
    Action.REMOVE: "-",
    Action.CONFLICT: "!",
}
_DURATION_FIELDS = {"defaultMessageTimeToLive"}


def format_value(value: object, *, field: str | None = None) -> str:
    """A setting or rule part as people read it (``PT1M``, ``true``, ``SQL "a = 1"``)."""
    if value is None:
        return "never" if field in _DURATION_FIELDS else "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, CorrelationFilterSpec):
        terms = [f"{name} = {json.dumps(v)}" for name, v in value.system_properties().items()]
        terms += [f"{name} = {json.dumps(v)}" for name, v in sorted(value.properties.items())]
        return "correlation " + (" AND ".join(terms) or "(empty: matches every message)")
    if isinstance(value, SqlFilterSpec):
        return f"SQL {json.dumps(value.expression)}"
    if isinstance(value, TrueFilterSpec):
        return "match-all (1=1)"
    if isinstance(value, FalseFilterSpec):
        return "match-none (1=0)"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def describe_change(change: Change) -> str:
    """One line: ``update subscription t/subscriptions/s: maxDeliveryCount 3 -> 10``."""
    head = f"{change.action} {change.kind} {change.path}"
    parts = [_field_text(change, f.name, f.current, f.wanted) for f in change.fields]
    rule = _listed_rule(change)
    if rule is not None:
        parts = [f"filter {format_value(rule.filter)}"]
        if rule.action:
            parts.append(f"action {format_value(rule.action)}")
    text = f"{head}: {', '.join(parts)}" if parts else head
    return f"{text} ({change.note})" if change.note else text


def _listed_rule(change: Change) -> RuleSpec | None:
    """The rule an add or remove shows in full (replacements show the parts that differ)."""
    rule = change.wanted if change.action is Action.ADD else change.current
    if change.action in (Action.ADD, Action.REMOVE) and isinstance(rule, RuleSpec):
        return rule
    return None


def _field_text(change: Change, name: str, current: object, wanted: object) -> str:
    if change.action is Action.CREATE:
        return f"{name}: {format_value(wanted, field=name)}"
    return f"{name}: {format_value(current, field=name)} -> {format_value(wanted, field=name)}"


def capacity_text(capacity: TopicCapacity) -> list[str]:
    """The operations-per-step arithmetic for one topic."""
    n = capacity.subscriptions
    ops = capacity.operations_per_step
    noun = "subscription" if n == 1 else "subscriptions"
    return [
        f"topic {capacity.topic}: {n:,} {noun}; each message costs {ops:,} operations:",
        f"    1 send + 1 receive + 1 complete + {n:,} filter evaluations (one per subscription)",
        f"    = {ops:,} operations per message (a step, on the steps topic), {ops:,} million "
        "operations per million messages (Standard tier bills per million operations)",
    ]


def render_plan_text(plan: Plan) -> str:
    """The plan for people: changes with their settings, extras, capacity, warnings, summary."""
    lines = [f"Service Bus topology plan for {plan.target}", ""]
    for change in plan.changes:
        lines.append(f"  {_SYMBOLS[change.action]} {change.action} {change.kind} {change.path}")
        for f in change.fields:
            lines.append(f"        {_field_text(change, f.name, f.current, f.wanted)}")
        rule = _listed_rule(change)
        if rule is not None:
            lines.append(f"        filter: {format_value(rule.filter)}")
            if rule.action:
                lines.append(f"        action: {format_value(rule.action)}")
        if change.note:
            lines.append(f"        ({change.note})")
    if plan.changes:
        lines.append("")
    if plan.extras:
        lines.append("Left alone (in the namespace but not in the topology; never deleted):")
        lines += [f"  {extra.kind} {extra.path}" for extra in plan.extras]
        lines.append("")
    if plan.capacity:
        lines.append("Capacity:")
        for capacity in plan.capacity:
            lines += [f"  {line}" for line in capacity_text(capacity)]
        lines.append("")
    if plan.warnings:
        lines.append("Warnings:")
        lines += [f"  - {warning}" for warning in plan.warnings]
        lines.append("")
    if plan.pending:
        lines.append(f"Plan: {plan.summary()}.")
    else:
        lines.append("No changes: the namespace matches the topology.")
    return "\n".join(lines) + "\n"


def _json(value: object) -> object:
    if isinstance(value, TrueFilterSpec):
        return {"sqlFilter": "1=1"}
    if isinstance(value, CorrelationFilterSpec | SqlFilterSpec | FalseFilterSpec):
        return filter_document(value)
    return json_value(value)


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (``floworch topology plan --json``)."""
    changes: list[dict[str, Any]] = []
    for change in plan.changes:
        item: dict[str, Any] = {
            "action": str(change.action),
            "kind": str(change.kind),
            "path": change.path,
            "fields": [
                {"name": f.name, "current": _json(f.current), "wanted": _json(f.wanted)}
                for f in change.fields
            ],
        }
        rule = _listed_rule(change)
        if rule is not None:
            item["filter"] = _json(rule.filter)
            item["ruleAction"] = rule.action
        if change.note:
            item["note"] = change.note
        changes.append(item)
    return {
        "target": plan.target,
        "pending": plan.pending,
        "summary": plan.summary(),
        "changes": changes,
        "extra": [{"kind": str(e.kind), "path": e.path} for e in plan.extras],
        "capacity": [
            {
                "topic": c.topic,
                "subscriptions": c.subscriptions,
                "operationsPerStep": c.operations_per_step,
                "breakdown": {
                    "send": 1,
                    "receive": 1,
                    "complete": 1,
                    "filterEvaluations": c.subscriptions,
                },
            }
            for c in plan.capacity
        ],
        "warnings": list(plan.warnings),
    }
