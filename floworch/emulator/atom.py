"""The ATOM/XML documents of the Service Bus management API, as ``ServiceBusAdministrationClient``
sends and reads them.

Requests are ``<entry><content><QueueDescription|TopicDescription|SubscriptionDescription|
RuleDescription>`` bodies; responses are entries and feeds of the same descriptions plus runtime
counters (``MessageCount``, ``CountDetails`` in the 2011/06 namespace). Element names, namespaces
and order follow the SDK's generated models (``azure/servicebus/management/_generated``), which
follow the service. Parsing ignores elements it does not know (the SDK echoes read-only ones).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from floworch.emulator.entities import (
    CorrelationFilter,
    EmulatorError,
    EntityRuntimeInfo,
    EntityStatus,
    FalseFilter,
    PropertyValue,
    QueueSettings,
    RuleFilter,
    RuleSettings,
    SqlFilter,
    SubscriptionSettings,
    TopicSettings,
    TrueFilter,
)
from floworch.runtime.servicebus.topology.durations import (
    DurationFormatError,
    format_duration,
    parse_duration,
    parse_duration_or_never,
)

ATOM_NS = "http://www.w3.org/2005/Atom"
SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
SB_COUNT_NS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
MAX_BODY_BYTES = 1024 * 1024


class AtomFormatError(EmulatorError):
    """A request body is not a management document this emulator understands."""


def _sb(tag: str) -> str:
    return f"{{{SB_NS}}}{tag}"


def _atom(tag: str) -> str:
    return f"{{{ATOM_NS}}}{tag}"


# --- field tables: (XML element, dataclass attribute, kind), in the service's element order -----
# Kinds: "ttl" is a duration where TimeSpan.MaxValue means None; "fwd" is a forwarding target.
# "@..." rows are runtime values rendered from EntityRuntimeInfo and never parsed.

_QUEUE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("LockDuration", "lock_duration", "duration"),
    ("MaxSizeInMegabytes", "max_size_in_megabytes", "int"),
    ("RequiresDuplicateDetection", "requires_duplicate_detection", "bool"),
    ("RequiresSession", "requires_session", "bool"),
    ("DefaultMessageTimeToLive", "default_message_ttl", "ttl"),
    ("DeadLetteringOnMessageExpiration", "dead_lettering_on_message_expiration", "bool"),
    ("DuplicateDetectionHistoryTimeWindow", "duplicate_detection_history_time_window", "duration"),
    ("MaxDeliveryCount", "max_delivery_count", "int"),
    ("EnableBatchedOperations", "enable_batched_operations", "bool"),
    ("SizeInBytes", "@size", "runtime"),
    ("MessageCount", "@total", "runtime"),
    ("Status", "status", "status"),
    ("CreatedAt", "@created", "runtime"),
    ("UpdatedAt", "@updated", "runtime"),
    ("AccessedAt", "@accessed", "runtime"),
    ("CountDetails", "@counts", "runtime"),
    ("AutoDeleteOnIdle", "auto_delete_on_idle", "ttl"),
    ("EnablePartitioning", "enable_partitioning", "bool"),
    ("EnableExpress", "enable_express", "bool"),
    ("ForwardTo", "forward_to", "fwd"),
    ("UserMetadata", "user_metadata", "str"),
    ("ForwardDeadLetteredMessagesTo", "forward_dead_lettered_messages_to", "fwd"),
    ("MaxMessageSizeInKilobytes", "max_message_size_in_kilobytes", "int"),
)

_TOPIC_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("DefaultMessageTimeToLive", "default_message_ttl", "ttl"),
    ("MaxSizeInMegabytes", "max_size_in_megabytes", "int"),
    ("RequiresDuplicateDetection", "requires_duplicate_detection", "bool"),
    ("DuplicateDetectionHistoryTimeWindow", "duplicate_detection_history_time_window", "duration"),
    ("EnableBatchedOperations", "enable_batched_operations", "bool"),
    ("SizeInBytes", "@size", "runtime"),
    ("Status", "status", "status"),
    ("CreatedAt", "@created", "runtime"),
    ("UpdatedAt", "@updated", "runtime"),
    ("AccessedAt", "@accessed", "runtime"),
    ("SupportOrdering", "support_ordering", "bool"),
    ("CountDetails", "@counts", "runtime"),
    ("SubscriptionCount", "@subscriptions", "runtime"),
    ("AutoDeleteOnIdle", "auto_delete_on_idle", "ttl"),
    ("EnablePartitioning", "enable_partitioning", "bool"),
    ("EnableExpress", "enable_express", "bool"),
    ("UserMetadata", "user_metadata", "str"),
    ("MaxMessageSizeInKilobytes", "max_message_size_in_kilobytes", "int"),
)

_SUBSCRIPTION_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("LockDuration", "lock_duration", "duration"),
    ("RequiresSession", "requires_session", "bool"),
    ("DefaultMessageTimeToLive", "default_message_ttl", "ttl"),
    ("DeadLetteringOnMessageExpiration", "dead_lettering_on_message_expiration", "bool"),
    (
        "DeadLetteringOnFilterEvaluationExceptions",
        "dead_lettering_on_filter_evaluation_exceptions",
        "bool",
    ),
    ("MessageCount", "@total", "runtime"),
    ("MaxDeliveryCount", "max_delivery_count", "int"),
    ("EnableBatchedOperations", "enable_batched_operations", "bool"),
    ("Status", "status", "status"),
    ("ForwardTo", "forward_to", "fwd"),
    ("CreatedAt", "@created", "runtime"),
    ("UpdatedAt", "@updated", "runtime"),
    ("AccessedAt", "@accessed", "runtime"),
    ("CountDetails", "@counts", "runtime"),
    ("UserMetadata", "user_metadata", "str"),
    ("ForwardDeadLetteredMessagesTo", "forward_dead_lettered_messages_to", "fwd"),
    ("AutoDeleteOnIdle", "auto_delete_on_idle", "ttl"),
)

# --- parsing ----------------------------------------------------------------------------------


def _parse_xml(body: bytes) -> ET.Element:
    if len(body) > MAX_BODY_BYTES:
        raise AtomFormatError(f"request body is larger than {MAX_BODY_BYTES} bytes")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        # Entity declarations are never legitimate here and enable expansion attacks.
        raise AtomFormatError("DOCTYPE and ENTITY declarations are not allowed")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise AtomFormatError(f"malformed XML: {exc}") from exc


def _description(body: bytes, kind: str) -> ET.Element:
    root = _parse_xml(body)
    if root.tag == _sb(kind):
        return root
    found = root.find(f"{_atom('content')}/{_sb(kind)}")
    if found is None:
        raise AtomFormatError(f"expected an Atom entry whose content is a {kind}")
    return found


def _convert(kind: str, text: str, element: str) -> Any:
    try:
        if kind == "duration":
            return parse_duration(text)
        if kind == "ttl":
            return parse_duration_or_never(text)
        if kind == "int":
            return int(text)
        if kind == "bool":
            if text.strip().lower() not in ("true", "false"):
                raise ValueError(text)
            return text.strip().lower() == "true"
        if kind == "status":
            return EntityStatus(text.strip())
        if kind == "fwd":
            return entity_name_from_address(text) or None
        return text
    except (ValueError, DurationFormatError) as exc:
        raise AtomFormatError(f"{element}: invalid value {text!r}") from exc


def entity_name_from_address(address: str) -> str:
    """``sb://host/queue`` or ``https://host/queue`` -> ``queue``; a bare name is kept."""
    if "://" in address:
        address = address.split("://", 1)[1]
        address = address.split("/", 1)[1] if "/" in address else ""
    return address.strip("/")


def _parse_fields(element: ET.Element, table: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for tag, attr, kind in table:
        if kind == "runtime":
            continue
        child = element.find(_sb(tag))
        if child is None:
            continue
        text = child.text or ""
        if not text.strip() and kind != "str":
            continue  # an empty element is "not given", e.g. ForwardTo with nothing to forward
        values[attr] = _convert(kind, text, tag)
    return values


def parse_queue(body: bytes, name: str) -> QueueSettings:
    """Parse a ``PUT /<queue>`` body. Missing elements keep the Service Bus defaults.

    Raises:
        AtomFormatError: when the XML is malformed or a value is invalid.
    """
    return QueueSettings(
        name=name, **_parse_fields(_description(body, "QueueDescription"), _QUEUE_FIELDS)
    )


def parse_topic(body: bytes, name: str) -> TopicSettings:
    """Parse a ``PUT /<topic>`` body.

    Raises:
        AtomFormatError: when the XML is malformed or a value is invalid.
    """
    return TopicSettings(
        name=name, **_parse_fields(_description(body, "TopicDescription"), _TOPIC_FIELDS)
    )


def parse_subscription(body: bytes, topic_name: str, name: str) -> SubscriptionSettings:
    """Parse a ``PUT /<topic>/subscriptions/<name>`` body.

    Raises:
        AtomFormatError: when the XML is malformed or a value is invalid.
    """
    fields = _parse_fields(_description(body, "SubscriptionDescription"), _SUBSCRIPTION_FIELDS)
    return SubscriptionSettings(topic_name=topic_name, name=name, **fields)


def _xsi_type(element: ET.Element) -> str:
    raw = element.get(f"{{{XSI_NS}}}type", "")
    return raw.split(":")[-1]


def _parse_value(element: ET.Element) -> PropertyValue:
    kind = _xsi_type(element)
    text = element.text or ""
    try:
        if kind in ("int", "long", "short", "byte"):
            return int(text)
        if kind in ("double", "float", "decimal"):
            return float(text)
        if kind == "boolean":
            return text.strip().lower() == "true"
        if kind == "dateTime":
            value = datetime.fromisoformat(text.strip())
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if kind == "duration":
            return parse_duration(text)
        if kind == "guid":
            return uuid.UUID(text)
    except (ValueError, DurationFormatError) as exc:
        raise AtomFormatError(f"invalid {kind} value {text!r}") from exc
    if element.get(f"{{{XSI_NS}}}nil") == "true":
        return None
    return text


def _parse_key_values(parent: ET.Element | None) -> dict[str, PropertyValue]:
    values: dict[str, PropertyValue] = {}
    if parent is None:
        return values
    for item in parent:
        key, value = item.find(_sb("Key")), item.find(_sb("Value"))
        if key is None or key.text is None or value is None:
            raise AtomFormatError("a key/value pair lacks its Key or Value")
        values[key.text] = _parse_value(value)
    return values


def _text(element: ET.Element, tag: str) -> str | None:
    child = element.find(_sb(tag))
    return None if child is None or child.text is None else child.text


def _parse_filter(element: ET.Element | None) -> RuleFilter:
    if element is None:
        return TrueFilter()
    kind = _xsi_type(element)
    if kind == "CorrelationFilter":
        return CorrelationFilter(
            correlation_id=_text(element, "CorrelationId"),
            message_id=_text(element, "MessageId"),
            to=_text(element, "To"),
            reply_to=_text(element, "ReplyTo"),
            subject=_text(element, "Label"),
            session_id=_text(element, "SessionId"),
            reply_to_session_id=_text(element, "ReplyToSessionId"),
            content_type=_text(element, "ContentType"),
            properties=_parse_key_values(element.find(_sb("Properties"))),
        )
    if kind == "TrueFilter":
        return TrueFilter()
    if kind == "FalseFilter":
        return FalseFilter()
    if kind == "SqlFilter":
        expression = _text(element, "SqlExpression")
        if not expression:
            raise AtomFormatError("a SqlFilter needs a SqlExpression")
        return SqlFilter(expression)
    raise AtomFormatError(f"unsupported filter type {kind!r}")


def parse_rule(body: bytes, topic_name: str, subscription_name: str, name: str) -> RuleSettings:
    """Parse a ``PUT .../rules/<name>`` body (filter, optional SQL action).

    The SQL text is not compiled here; the backend decides whether it is valid.

    Raises:
        AtomFormatError: when the XML is malformed, a value is invalid or the filter type is
            unknown.
    """
    element = _description(body, "RuleDescription")
    action_element = element.find(_sb("Action"))
    action = None
    if action_element is not None and _xsi_type(action_element) == "SqlRuleAction":
        expression = _text(action_element, "SqlExpression")
        if expression:
            action = expression
    return RuleSettings(
        topic_name=topic_name,
        subscription_name=subscription_name,
        name=name,
        filter=_parse_filter(element.find(_sb("Filter"))),
        action=action,
    )


# --- rendering --------------------------------------------------------------------------------


def format_timestamp(value: datetime) -> str:
    """UTC ISO-8601 with a ``Z``, as the service writes timestamps."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sub(parent: ET.Element, tag: str, text: str | None = None, ns: str = SB_NS) -> ET.Element:
    child = ET.SubElement(parent, f"{{{ns}}}{tag}")
    if text is not None:
        child.text = text
    return child


def _format_value(kind: str, value: Any, namespace_host: str) -> str:
    if kind in ("duration", "ttl"):
        return format_duration(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "status":
        return str(value)
    if kind == "fwd":
        return f"sb://{namespace_host}/{value}"
    return str(value)


def _render_description(
    kind: str,
    settings: object,
    info: EntityRuntimeInfo,
    table: Sequence[tuple[str, str, str]],
    namespace_host: str,
) -> ET.Element:
    element = ET.Element(_sb(kind))
    runtime: dict[str, Callable[[], str | None]] = {
        "@size": lambda: str(info.size_in_bytes),
        "@total": lambda: str(info.total_message_count),
        "@created": lambda: format_timestamp(info.created_at),
        "@updated": lambda: format_timestamp(info.updated_at),
        "@accessed": lambda: format_timestamp(info.accessed_at),
        "@subscriptions": lambda: str(info.subscription_count),
        "@counts": lambda: None,
    }
    for tag, attr, field_kind in table:
        if field_kind == "runtime":
            child = _sub(element, tag, runtime[attr]())
            if attr == "@counts":
                _render_counts(child, info)
            continue
        value = getattr(settings, attr)
        if value is None and field_kind not in ("ttl",):
            continue  # absent optional values (ForwardTo, UserMetadata) are omitted
        _sub(element, tag, _format_value(field_kind, value, namespace_host))
    return element


def _render_counts(parent: ET.Element, info: EntityRuntimeInfo) -> None:
    for tag, value in (
        ("ActiveMessageCount", info.active_message_count),
        ("DeadLetterMessageCount", info.dead_letter_message_count),
        ("ScheduledMessageCount", info.scheduled_message_count),
        ("TransferMessageCount", info.transfer_message_count),
        ("TransferDeadLetterMessageCount", info.transfer_dead_letter_message_count),
    ):
        _sub(parent, tag, str(value), ns=SB_COUNT_NS)


def _value_type(value: PropertyValue) -> tuple[str, str]:
    # bool before int: bool is an int subclass. Types follow the SDK's serialize_value_type.
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, int):
        return ("int" if -(2**31) <= value < 2**31 else "long"), str(value)
    if isinstance(value, float):
        return "double", repr(value)
    if isinstance(value, datetime):
        return "dateTime", value.isoformat()
    if isinstance(value, timedelta):
        return "duration", format_duration(value)
    return "string", "" if value is None else str(value)


def _render_key_values(parent: ET.Element, values: Iterable[tuple[str, PropertyValue]]) -> None:
    for key, value in values:
        item = _sub(parent, "KeyValueOfstringanyType")
        _sub(item, "Key", key)
        value_type, text = _value_type(value)
        # The SDK reads the type as "<prefix>:<type>" and splits on the colon, so keep a prefix.
        value_element = _sub(item, "Value", text)
        value_element.set(f"{{{XSI_NS}}}type", f"d6p1:{value_type}")
        value_element.set("xmlns:d6p1", XSD_NS)


def _render_filter(parent: ET.Element, rule_filter: RuleFilter) -> None:
    element = _sub(parent, "Filter")
    if isinstance(rule_filter, CorrelationFilter):
        element.set(f"{{{XSI_NS}}}type", "CorrelationFilter")
        for tag, value in (
            ("CorrelationId", rule_filter.correlation_id),
            ("MessageId", rule_filter.message_id),
            ("To", rule_filter.to),
            ("ReplyTo", rule_filter.reply_to),
            ("Label", rule_filter.subject),
            ("SessionId", rule_filter.session_id),
            ("ReplyToSessionId", rule_filter.reply_to_session_id),
            ("ContentType", rule_filter.content_type),
        ):
            if value is not None:
                _sub(element, tag, value)
        _render_key_values(_sub(element, "Properties"), rule_filter.properties.items())
        return
    kind = {TrueFilter: "TrueFilter", FalseFilter: "FalseFilter"}.get(
        type(rule_filter), "SqlFilter"
    )
    element.set(f"{{{XSI_NS}}}type", kind)
    _sub(element, "SqlExpression", rule_filter.sql_expression)
    _sub(element, "CompatibilityLevel", "20")


def _render_rule(rule: RuleSettings) -> ET.Element:
    element = ET.Element(_sb("RuleDescription"))
    _render_filter(element, rule.filter)
    action = _sub(element, "Action")
    if rule.action is None:
        action.set(f"{{{XSI_NS}}}type", "EmptyRuleAction")
    else:
        action.set(f"{{{XSI_NS}}}type", "SqlRuleAction")
        _sub(action, "SqlExpression", rule.action)
        _sub(action, "CompatibilityLevel", "20")
    _sub(element, "Name", rule.name)
    return element


def _entry(
    title: str, self_url: str, description: ET.Element, updated: datetime | None = None
) -> ET.Element:
    now = format_timestamp(updated or datetime.now(UTC))
    entry = ET.Element(_atom("entry"))
    _sub(entry, "id", self_url, ns=ATOM_NS)
    _sub(entry, "title", title, ns=ATOM_NS).set("type", "text")
    _sub(entry, "published", now, ns=ATOM_NS)
    _sub(entry, "updated", now, ns=ATOM_NS)
    author = _sub(entry, "author", ns=ATOM_NS)
    _sub(author, "name", "floworch-emulator", ns=ATOM_NS)
    link = _sub(entry, "link", ns=ATOM_NS)
    link.set("rel", "self")
    link.set("href", self_url)
    content = _sub(entry, "content", ns=ATOM_NS)
    content.set("type", "application/xml")
    content.append(description)
    return entry


def queue_entry(
    queue: QueueSettings, info: EntityRuntimeInfo, *, self_url: str, namespace_host: str
) -> ET.Element:
    """The Atom entry of a queue with its runtime counters."""
    description = _render_description(
        "QueueDescription", queue, info, _QUEUE_FIELDS, namespace_host
    )
    return _entry(queue.name, self_url, description, info.updated_at)


def topic_entry(
    topic: TopicSettings, info: EntityRuntimeInfo, *, self_url: str, namespace_host: str
) -> ET.Element:
    """The Atom entry of a topic with its runtime counters."""
    description = _render_description(
        "TopicDescription", topic, info, _TOPIC_FIELDS, namespace_host
    )
    return _entry(topic.name, self_url, description, info.updated_at)


def subscription_entry(
    subscription: SubscriptionSettings,
    info: EntityRuntimeInfo,
    *,
    self_url: str,
    namespace_host: str,
) -> ET.Element:
    """The Atom entry of a subscription with its runtime counters."""
    description = _render_description(
        "SubscriptionDescription", subscription, info, _SUBSCRIPTION_FIELDS, namespace_host
    )
    return _entry(subscription.name, self_url, description, info.updated_at)


def rule_entry(rule: RuleSettings, *, self_url: str) -> ET.Element:
    """The Atom entry of a rule."""
    return _entry(rule.name, self_url, _render_rule(rule))


def _to_bytes(element: ET.Element) -> bytes:
    data: bytes = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return data


def render_entry(entry: ET.Element) -> bytes:
    """Serialize one entry as an XML document."""
    return _to_bytes(entry)


def render_feed(
    entries: Sequence[ET.Element], *, title: str, self_url: str, next_url: str | None = None
) -> bytes:
    """Serialize a feed; ``next_url`` becomes the second link, which the SDK follows to page."""
    feed = ET.Element(_atom("feed"))
    _sub(feed, "title", title, ns=ATOM_NS).set("type", "text")
    _sub(feed, "id", self_url, ns=ATOM_NS)
    _sub(feed, "updated", format_timestamp(datetime.now(UTC)), ns=ATOM_NS)
    links = [("self", self_url)] + ([("next", next_url)] if next_url else [])
    for rel, href in links:
        link = _sub(feed, "link", ns=ATOM_NS)
        link.set("rel", rel)
        link.set("href", href)
    feed.extend(entries)
    return _to_bytes(feed)


def render_error(code: int, detail: str) -> bytes:
    """The ``<Error><Code/><Detail/></Error>`` body the SDK turns into an error message."""
    error = ET.Element("Error")
    ET.SubElement(error, "Code").text = str(code)
    ET.SubElement(error, "Detail").text = detail
    return _to_bytes(error)
