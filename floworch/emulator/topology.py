"""``topology/servicebus.json``: the queues, topics, subscriptions and rules the emulator creates.

The document is validated in two passes, structure (pydantic) then meaning (unique names, SQL that
parses, forwarding targets that exist), and every problem is reported at once with its JSON path.
The JSON Schema shipped as ``topology.schema.json`` is generated from :class:`TopologyDocument`
(``python -m floworch.emulator.topology`` rewrites it). The format is described in
``docs/topology.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)

from floworch import strict_json
from floworch.emulator.entities import (
    DEFAULT_RULE_NAME,
    CorrelationFilter,
    EmulatorError,
    QueueSettings,
    RuleFilter,
    RuleSettings,
    SqlFilter,
    SubscriptionSettings,
    TopicSettings,
    Topology,
    TrueFilter,
    entity_key,
)
from floworch.emulator.sqlfilter import SqlFilterError, compile_sql_action, compile_sql_filter
from floworch.errors import ValidationIssue
from floworch.runtime.servicebus.topology.durations import never_as_none, parse_duration
from floworch.runtime.servicebus.topology.model import CHILD_NAME, ENTITY_NAME

#: A path to a JSON file, or the already-decoded document.
TopologySource: TypeAlias = Path | str | Mapping[str, Any]

SCHEMA_PATH = Path(__file__).with_name("topology.schema.json")

# Service Bus naming rules: entity paths up to 260 characters, subscriptions and rules up to 50.
_ENTITY_NAME = ENTITY_NAME
_CHILD_NAME = CHILD_NAME


class TopologyError(EmulatorError):
    """The topology document is invalid; ``issues`` lists every problem with its JSON path."""

    def __init__(self, issues: list[ValidationIssue], *, source: str | None = None) -> None:
        self.issues = tuple(issues)
        self.source = source
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        count = len(self.issues)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{head}invalid Service Bus topology ({count} {noun}):\n{lines}")


def _to_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)  # its DurationFormatError is a ValueError: a validation issue


Duration = Annotated[
    timedelta,
    PlainValidator(_to_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": "^P", "description": "ISO-8601, e.g. PT30S"},
                {"type": "number", "minimum": 0, "description": "seconds"},
            ]
        }
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


class CorrelationFilterDoc(_Model):
    """Every listed value must equal the message's (``label`` is an alias of ``subject``)."""

    correlation_id: str | None = Field(None, alias="correlationId")
    message_id: str | None = Field(None, alias="messageId")
    to: str | None = Field(None, alias="to")
    reply_to: str | None = Field(None, alias="replyTo")
    subject: str | None = Field(None, alias="subject")
    label: str | None = Field(None, alias="label")
    session_id: str | None = Field(None, alias="sessionId")
    reply_to_session_id: str | None = Field(None, alias="replyToSessionId")
    content_type: str | None = Field(None, alias="contentType")
    properties: dict[str, str | bool | int | float] = Field(default_factory=dict)


class RuleDoc(_Model):
    """A rule: at most one of ``correlationFilter`` / ``sqlFilter`` (none matches everything)."""

    name: str = Field(min_length=1)
    correlation_filter: CorrelationFilterDoc | None = Field(None, alias="correlationFilter")
    sql_filter: str | None = Field(None, alias="sqlFilter", min_length=1)
    action: str | None = Field(None, min_length=1, description="SQL action, e.g. SET user.x = 1")


class SubscriptionDoc(_Model):
    name: str = Field(min_length=1)
    lock_duration: Duration | None = Field(None, alias="lockDuration")
    max_delivery_count: int | None = Field(None, alias="maxDeliveryCount", ge=1)
    default_message_ttl: Duration | None = Field(None, alias="defaultMessageTimeToLive")
    dead_lettering_on_message_expiration: bool | None = Field(
        None, alias="deadLetteringOnMessageExpiration"
    )
    dead_lettering_on_filter_evaluation_exceptions: bool | None = Field(
        None, alias="deadLetteringOnFilterEvaluationExceptions"
    )
    requires_session: bool | None = Field(None, alias="requiresSession")
    auto_delete_on_idle: Duration | None = Field(None, alias="autoDeleteOnIdle")
    forward_to: str | None = Field(None, alias="forwardTo")
    forward_dead_lettered_messages_to: str | None = Field(
        None, alias="forwardDeadLetteredMessagesTo"
    )
    rules: list[RuleDoc] | None = None


class TopicDoc(_Model):
    name: str = Field(min_length=1)
    default_message_ttl: Duration | None = Field(None, alias="defaultMessageTimeToLive")
    requires_duplicate_detection: bool | None = Field(None, alias="requiresDuplicateDetection")
    duplicate_detection_history_time_window: Duration | None = Field(
        None, alias="duplicateDetectionHistoryTimeWindow"
    )
    max_size_in_megabytes: int | None = Field(None, alias="maxSizeInMegabytes", ge=1)
    auto_delete_on_idle: Duration | None = Field(None, alias="autoDeleteOnIdle")
    subscriptions: list[SubscriptionDoc] = Field(default_factory=list)


class QueueDoc(_Model):
    name: str = Field(min_length=1)
    lock_duration: Duration | None = Field(None, alias="lockDuration")
    max_delivery_count: int | None = Field(None, alias="maxDeliveryCount", ge=1)
    default_message_ttl: Duration | None = Field(None, alias="defaultMessageTimeToLive")
    dead_lettering_on_message_expiration: bool | None = Field(
        None, alias="deadLetteringOnMessageExpiration"
    )
    requires_duplicate_detection: bool | None = Field(None, alias="requiresDuplicateDetection")
    duplicate_detection_history_time_window: Duration | None = Field(
        None, alias="duplicateDetectionHistoryTimeWindow"
    )
    requires_session: bool | None = Field(None, alias="requiresSession")
    max_size_in_megabytes: int | None = Field(None, alias="maxSizeInMegabytes", ge=1)
    auto_delete_on_idle: Duration | None = Field(None, alias="autoDeleteOnIdle")
    forward_to: str | None = Field(None, alias="forwardTo")
    forward_dead_lettered_messages_to: str | None = Field(
        None, alias="forwardDeadLetteredMessagesTo"
    )


class TopologyDocument(_Model):
    """The root of ``topology/servicebus.json``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="floworch Service Bus topology",
        json_schema_extra={"$id": "https://floworch.dev/schemas/servicebus-topology.json"},
    )

    schema_ref: str | None = Field(None, alias="$schema")
    queues: list[QueueDoc] = Field(default_factory=list)
    topics: list[TopicDoc] = Field(default_factory=list)


def topology_json_schema() -> dict[str, Any]:
    """The JSON Schema of the topology document (what ``topology.schema.json`` holds)."""
    return TopologyDocument.model_json_schema(by_alias=True)


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _settings(doc: BaseModel, *skip: str) -> dict[str, Any]:
    """Only the fields the document set, so dataclass defaults stay the Service Bus defaults
    ("never" durations become ``None``, as the model holds them)."""
    return {
        key: never_as_none(value) if isinstance(value, timedelta) and key in _NEVER_ABLE else value
        for key in doc.model_fields_set
        if key not in skip and (value := getattr(doc, key)) is not None
    }


_NEVER_ABLE = {"default_message_ttl", "auto_delete_on_idle"}


def _rule_filter(doc: RuleDoc) -> RuleFilter:
    if doc.correlation_filter is not None:
        cf = doc.correlation_filter
        return CorrelationFilter(
            correlation_id=cf.correlation_id,
            message_id=cf.message_id,
            to=cf.to,
            reply_to=cf.reply_to,
            subject=cf.subject if cf.subject is not None else cf.label,
            session_id=cf.session_id,
            reply_to_session_id=cf.reply_to_session_id,
            content_type=cf.content_type,
            properties=cf.properties,
        )
    if doc.sql_filter is not None:
        return SqlFilter(doc.sql_filter)
    return TrueFilter()


class _Checker:
    """Semantic checks that need the whole document; collects issues instead of stopping."""

    def __init__(self, doc: TopologyDocument) -> None:
        self.doc = doc
        self.issues: list[ValidationIssue] = []
        self.entities: dict[str, str] = {}  # key -> JSON path of the declaration

    def add(self, path: str, message: str) -> None:
        self.issues.append(ValidationIssue(path, message))

    def claim(self, seen: dict[str, str], key: str, path: str, what: str) -> None:
        if key in seen:
            self.add(
                f"{path}.name",
                f"duplicate {what} name (names are case-insensitive); "
                f"first declared at {seen[key]}",
            )
        else:
            seen[key] = path

    def check(self) -> None:
        for i, queue in enumerate(self.doc.queues):
            path = f"$.queues[{i}]"
            self.name(path, queue.name, _ENTITY_NAME, "queue")
            self.claim(self.entities, entity_key(queue.name), path, "queue or topic")
        for i, topic in enumerate(self.doc.topics):
            path = f"$.topics[{i}]"
            self.name(path, topic.name, _ENTITY_NAME, "topic")
            self.claim(self.entities, entity_key(topic.name), path, "queue or topic")
            subs: dict[str, str] = {}
            for j, sub in enumerate(topic.subscriptions):
                sub_path = f"{path}.subscriptions[{j}]"
                self.name(sub_path, sub.name, _CHILD_NAME, "subscription")
                self.claim(subs, entity_key(sub.name), sub_path, "subscription")
                rules: dict[str, str] = {}
                for k, rule in enumerate(sub.rules or ()):
                    self.rule(f"{sub_path}.rules[{k}]", rule, rules)
        for i, queue in enumerate(self.doc.queues):
            self.forwards(
                f"$.queues[{i}]", queue.forward_to, queue.forward_dead_lettered_messages_to
            )
        for i, topic in enumerate(self.doc.topics):
            for j, sub in enumerate(topic.subscriptions):
                self.forwards(
                    f"$.topics[{i}].subscriptions[{j}]",
                    sub.forward_to,
                    sub.forward_dead_lettered_messages_to,
                )

    def name(self, path: str, name: str, pattern: re.Pattern[str], what: str) -> None:
        if not pattern.match(name):
            limit = 260 if pattern is _ENTITY_NAME else 50
            self.add(
                f"{path}.name",
                f"invalid {what} name {name!r}: use letters, digits, "
                f"'.', '-', '_' (up to {limit} characters, starting and ending with a letter or "
                "digit)",
            )

    def rule(self, path: str, rule: RuleDoc, seen: dict[str, str]) -> None:
        self.name(path, rule.name, _CHILD_NAME, "rule")
        self.claim(seen, entity_key(rule.name), path, "rule")
        if rule.correlation_filter is not None and rule.sql_filter is not None:
            self.add(path, "give either correlationFilter or sqlFilter, not both")
        cf = rule.correlation_filter
        if cf is not None and cf.subject is not None and cf.label is not None:
            self.add(f"{path}.correlationFilter", "give subject or label (an alias), not both")
        if rule.sql_filter is not None:
            try:
                compile_sql_filter(rule.sql_filter)
            except SqlFilterError as exc:
                self.add(f"{path}.sqlFilter", f"column {exc.column}: {exc.reason}")
        if rule.action is not None:
            try:
                compile_sql_action(rule.action)
            except SqlFilterError as exc:
                self.add(f"{path}.action", f"column {exc.column}: {exc.reason}")

    def forwards(self, path: str, *targets: str | None) -> None:
        for field_name, target in zip(
            ("forwardTo", "forwardDeadLetteredMessagesTo"), targets, strict=True
        ):
            if target is not None and entity_key(target) not in self.entities:
                self.add(f"{path}.{field_name}", f"{target!r} is not a declared queue or topic")


def _build(doc: TopologyDocument) -> Topology:
    queues = tuple(QueueSettings(**_settings(q)) for q in doc.queues)
    topics: list[TopicSettings] = []
    subscriptions: list[SubscriptionSettings] = []
    rules: list[RuleSettings] = []
    for topic in doc.topics:
        topics.append(TopicSettings(**_settings(topic, "subscriptions")))
        for sub in topic.subscriptions:
            subscriptions.append(
                SubscriptionSettings(topic_name=topic.name, **_settings(sub, "rules"))
            )
            declared = sub.rules if sub.rules else [RuleDoc(name=DEFAULT_RULE_NAME)]
            for rule in declared:
                rules.append(
                    RuleSettings(
                        topic_name=topic.name,
                        subscription_name=sub.name,
                        name=rule.name,
                        filter=_rule_filter(rule),
                        action=rule.action or None,
                    )
                )
    return Topology(
        queues=queues,
        topics=tuple(topics),
        subscriptions=tuple(subscriptions),
        rules=tuple(rules),
    )


def load_topology(source: TopologySource) -> Topology:
    """Load and validate a topology document from a JSON file path or a decoded mapping.

    Raises:
        TopologyError: listing every problem with its JSON path (``$.topics[0].name``).
        OSError: when the file cannot be read.
    """
    label: str | None = None
    if isinstance(source, Mapping):
        data: object = source
    else:
        label = str(source)
        try:
            data = strict_json.loads(Path(source).read_bytes())
        except strict_json.NotStrictJsonError as exc:
            raise TopologyError(
                [ValidationIssue("$", f"not valid JSON: {exc}")], source=label
            ) from exc
    try:
        doc = TopologyDocument.model_validate(data)
    except ValidationError as exc:
        issues = [ValidationIssue(_json_path(err["loc"]), err["msg"]) for err in exc.errors()]
        raise TopologyError(issues, source=label) from exc
    checker = _Checker(doc)
    checker.check()
    if checker.issues:
        raise TopologyError(checker.issues, source=label)
    return _build(doc)


if __name__ == "__main__":  # pragma: no cover - regenerates the shipped schema file
    SCHEMA_PATH.write_text(json.dumps(topology_json_schema(), indent=2) + "\n", encoding="utf-8")
