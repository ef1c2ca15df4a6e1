"""``topology/servicebus.json``: writing a :class:`Topology` as the document the emulator loads
(and Bicep reads), and reading such a document back as the topology to plan against.

The format is described in ``docs/topology.md``; its JSON Schema ships as
``floworch/emulator/topology.schema.json``, and an export writes a copy beside the document
(``servicebus.schema.json``) that ``$schema`` names, so the document says the same wherever
floworch is installed. Only the settings the topology manager manages are written; every other
setting is left to Service Bus's defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from floworch import strict_json
from floworch.errors import ValidationIssue
from floworch.runtime.servicebus.topology.durations import format_duration, parse_duration
from floworch.runtime.servicebus.topology.errors import TopologyDocumentError
from floworch.runtime.servicebus.topology.model import (
    DEFAULT_RULE_NAME,
    QUEUE_SETTINGS,
    SUBSCRIPTION_SETTINGS,
    TOPIC_SETTINGS,
    CorrelationFilterSpec,
    EntitySpec,
    FalseFilterSpec,
    QueueSpec,
    RuleFilterSpec,
    RuleSpec,
    Setting,
    SqlFilterSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    TrueFilterSpec,
    entity_key,
)

#: Where the JSON Schema of the document ships, inside the installed package.
SCHEMA_FILE = Path(__file__).resolve().parents[3] / "emulator" / "topology.schema.json"
#: The schema's ``$id``: the ``$schema`` of a document that has no schema file beside it.
SCHEMA_ID = "https://floworch.dev/schemas/servicebus-topology.json"

# Correlation filter keys of the document -> CorrelationFilterSpec attributes.
_CORRELATION_KEYS = {
    "correlationId": "correlation_id",
    "messageId": "message_id",
    "to": "to",
    "replyTo": "reply_to",
    "subject": "subject",
    "sessionId": "session_id",
    "replyToSessionId": "reply_to_session_id",
    "contentType": "content_type",
}
# Settings the document format knows but the topology manager does not apply (yet).
_UNMANAGED = {
    "maxSizeInMegabytes",
    "autoDeleteOnIdle",
    "forwardTo",
    "forwardDeadLetteredMessagesTo",
    "deadLetteringOnFilterEvaluationExceptions",
}


def schema_file_for(document_path: Path) -> Path:
    """Where an export writes the schema copy of ``document_path``: beside it, named
    ``<stem>.schema.json`` (``topology/servicebus.json`` -> ``topology/servicebus.schema.json``)."""
    return document_path.with_name(f"{document_path.stem}.schema.json")


def schema_reference(document_path: Path) -> str:
    """The ``$schema`` of a document written at ``document_path``: the file name of its schema
    copy (:func:`schema_file_for`), relative to the document, so editors find it and the text
    does not depend on where floworch is installed."""
    return schema_file_for(document_path).name


def schema_text() -> str:
    """The JSON Schema of the document, as shipped (what the schema copy holds)."""
    return SCHEMA_FILE.read_text(encoding="utf-8")


def to_document(topology: Topology, *, schema: str | None = None) -> dict[str, Any]:
    """The topology as the JSON document the emulator loads (``schema`` becomes ``$schema``)."""
    document: dict[str, Any] = {}
    if schema:
        document["$schema"] = schema
    document["topics"] = [
        {**_entity(topic), "subscriptions": [_subscription(s) for s in topic.subscriptions]}
        for topic in topology.topics
    ]
    document["queues"] = [_entity(queue) for queue in topology.queues]
    return document


def render_document(topology: Topology, *, schema: str | None = None) -> str:
    """:func:`to_document` as indented JSON text ending with a newline."""
    return json.dumps(to_document(topology, schema=schema), indent=2, ensure_ascii=False) + "\n"


def rule_document(rule: RuleSpec) -> dict[str, Any]:
    """One rule as the document writes it (also used in the JSON plan)."""
    out: dict[str, Any] = {"name": rule.name, **filter_document(rule.filter)}
    if rule.action is not None:
        out["action"] = rule.action
    return out


def filter_document(spec: RuleFilterSpec) -> dict[str, Any]:
    """``{"correlationFilter": {...}}``, ``{"sqlFilter": "..."}``, or ``{}`` for match-all."""
    if isinstance(spec, CorrelationFilterSpec):
        body: dict[str, Any] = {
            key: getattr(spec, attr)
            for key, attr in _CORRELATION_KEYS.items()
            if getattr(spec, attr) is not None
        }
        if spec.properties:
            body["properties"] = dict(spec.properties)
        return {"correlationFilter": body}
    if isinstance(spec, SqlFilterSpec):
        return {"sqlFilter": spec.expression}
    if isinstance(spec, FalseFilterSpec):
        return {"sqlFilter": "1=0"}
    return {}


def json_value(value: object) -> object:
    """A setting value as the document spells it (durations as ISO-8601)."""
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


def _entity(spec: EntitySpec) -> dict[str, Any]:
    settings: tuple[Setting, ...] = (
        QUEUE_SETTINGS if isinstance(spec, QueueSpec) else TOPIC_SETTINGS
    )
    out: dict[str, Any] = {"name": spec.name}
    for setting in settings:
        value = getattr(spec, setting.attr)
        if value is not None:
            out[setting.json_name] = json_value(value)
    return out


def _subscription(spec: SubscriptionSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": spec.name}
    for setting in SUBSCRIPTION_SETTINGS:
        value = getattr(spec, setting.attr)
        if value is not None:
            out[setting.json_name] = json_value(value)
    # A subscription whose only rule is $Default match-all is written without rules, which the
    # document format reads as exactly that.
    if not (len(spec.rules) == 1 and spec.rules[0] == RuleSpec(name=DEFAULT_RULE_NAME)):
        out["rules"] = [rule_document(rule) for rule in spec.rules]
    return out


# --- reading ----------------------------------------------------------------------------------


def read_document(source: Path | str | Mapping[str, Any]) -> Topology:
    """Read a topology document (a path or the decoded mapping) as the topology to apply.

    A subscription without ``rules`` wants exactly the ``$Default`` match-all rule.

    Raises:
        TopologyDocumentError: listing every problem with its JSON path, including settings
            the format allows but the topology manager does not apply.
        OSError: the file cannot be read.
    """
    label: str | None = None
    if isinstance(source, Mapping):
        data: object = source
    else:
        label = str(source)
        try:
            data = strict_json.loads(Path(source).read_bytes())
        except strict_json.NotStrictJsonError as exc:
            issue = ValidationIssue("$", f"not valid JSON: {exc}")
            raise TopologyDocumentError([issue], source=label) from exc
    reader = _Reader()
    topology = reader.topology(data)
    if reader.issues:
        raise TopologyDocumentError(reader.issues, source=label)
    return topology


class _Reader:
    """Builds a Topology from decoded JSON, collecting every problem instead of stopping."""

    def __init__(self) -> None:
        self.issues: list[ValidationIssue] = []

    def add(self, path: str, message: str) -> None:
        self.issues.append(ValidationIssue(path, message))

    def obj(self, value: object, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.add(path, "expected an object")
            return {}
        for key in value:
            if key in _UNMANAGED:
                self.add(
                    f"{path}.{key}",
                    "floworch topology plan/apply does not manage this setting; "
                    "remove it here or set it in Bicep",
                )
            elif key not in allowed:
                self.add(f"{path}.{key}", "unknown key")
        return {k: v for k, v in value.items() if k in allowed}

    def items(self, value: object, path: str) -> list[object]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, "expected a list")
            return []
        return list(value)

    def name(self, raw: dict[str, Any], path: str, seen: dict[str, str]) -> str:
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            self.add(f"{path}.name", "required: a non-empty string")
            return ""
        if entity_key(name) in seen:
            self.add(f"{path}.name", f"{name!r} is also declared at {seen[entity_key(name)]}")
        seen[entity_key(name)] = path
        return name

    def settings(
        self, raw: dict[str, Any], path: str, settings: tuple[Setting, ...]
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for setting in settings:
            if setting.json_name not in raw:
                continue
            value = raw[setting.json_name]
            where = f"{path}.{setting.json_name}"
            if setting.attr == "max_delivery_count":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    self.add(where, "expected an integer of at least 1")
                    continue
            elif setting.attr.startswith(("requires_", "dead_lettering")):
                if not isinstance(value, bool):
                    self.add(where, "expected true or false")
                    continue
            else:
                try:
                    value = parse_duration(value)
                except ValueError as exc:
                    self.add(where, str(exc))
                    continue
            values[setting.attr] = value
        return values

    def topology(self, data: object) -> Topology:
        root = self.obj(data, "$", {"$schema", "queues", "topics"})
        entities: dict[str, str] = {}
        queues: list[QueueSpec] = []
        for i, item in enumerate(self.items(root.get("queues"), "$.queues")):
            path = f"$.queues[{i}]"
            raw = self.obj(item, path, {"name", *(s.json_name for s in QUEUE_SETTINGS)})
            name = self.name(raw, path, entities)
            queues.append(QueueSpec(name=name, **self.settings(raw, path, QUEUE_SETTINGS)))
        topics: list[TopicSpec] = []
        for i, item in enumerate(self.items(root.get("topics"), "$.topics")):
            path = f"$.topics[{i}]"
            allowed = {"name", "subscriptions", *(s.json_name for s in TOPIC_SETTINGS)}
            raw = self.obj(item, path, allowed)
            name = self.name(raw, path, entities)
            subs: dict[str, str] = {}
            subscriptions = tuple(
                self.subscription(sub, f"{path}.subscriptions[{j}]", subs)
                for j, sub in enumerate(
                    self.items(raw.get("subscriptions"), f"{path}.subscriptions")
                )
            )
            settings = self.settings(raw, path, TOPIC_SETTINGS)
            topics.append(TopicSpec(name=name, subscriptions=subscriptions, **settings))
        return Topology(topics=tuple(topics), queues=tuple(queues))

    def subscription(self, item: object, path: str, seen: dict[str, str]) -> SubscriptionSpec:
        allowed = {"name", "rules", *(s.json_name for s in SUBSCRIPTION_SETTINGS)}
        raw = self.obj(item, path, allowed)
        name = self.name(raw, path, seen)
        rules_seen: dict[str, str] = {}
        rules = tuple(
            self.rule(rule, f"{path}.rules[{k}]", rules_seen)
            for k, rule in enumerate(self.items(raw.get("rules"), f"{path}.rules"))
        )
        settings = self.settings(raw, path, SUBSCRIPTION_SETTINGS)
        return SubscriptionSpec(
            name=name, rules=rules or (RuleSpec(name=DEFAULT_RULE_NAME),), **settings
        )

    def rule(self, item: object, path: str, seen: dict[str, str]) -> RuleSpec:
        raw = self.obj(item, path, {"name", "correlationFilter", "sqlFilter", "action"})
        name = self.name(raw, path, seen)
        action = raw.get("action")
        if action is not None and not isinstance(action, str):
            self.add(f"{path}.action", "expected a SQL action string")
            action = None
        if "correlationFilter" in raw and "sqlFilter" in raw:
            self.add(path, "give either correlationFilter or sqlFilter, not both")
        spec: RuleFilterSpec = TrueFilterSpec()
        if "sqlFilter" in raw:
            sql = raw["sqlFilter"]
            if isinstance(sql, str) and sql.strip():
                spec = SqlFilterSpec(sql)
            else:
                self.add(f"{path}.sqlFilter", "expected a non-empty SQL filter expression")
        elif "correlationFilter" in raw:
            spec = self.correlation(raw["correlationFilter"], f"{path}.correlationFilter")
        return RuleSpec(name=name, filter=spec, action=action)

    def correlation(self, value: object, path: str) -> CorrelationFilterSpec:
        raw = self.obj(value, path, {*_CORRELATION_KEYS, "label", "properties"})
        if "label" in raw and "subject" in raw:
            self.add(path, "give subject or label (an alias), not both")
        kwargs: dict[str, str] = {}
        for key, attr in {**_CORRELATION_KEYS, "label": "subject"}.items():
            if key in raw:
                if isinstance(raw[key], str):
                    kwargs[attr] = raw[key]
                else:
                    self.add(f"{path}.{key}", "expected a string")
        properties = raw.get("properties", {})
        if not isinstance(properties, dict) or not all(
            isinstance(v, str | bool | int | float) for v in properties.values()
        ):
            self.add(f"{path}.properties", "expected an object of strings, numbers or booleans")
            properties = {}
        return CorrelationFilterSpec(properties=properties, **kwargs)
