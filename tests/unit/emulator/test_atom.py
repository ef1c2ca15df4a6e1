"""The ATOM codec: SDK request bodies parse, rendered entries parse back through the SDK models."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus.management import CorrelationRuleFilter, QueueProperties, RuleProperties
from azure.servicebus.management._generated._serialization import Model
from azure.servicebus.management._generated.models import (
    CreateQueueBody,
    CreateQueueBodyContent,
    CreateRuleBody,
    CreateRuleBodyContent,
    QueueDescriptionEntry,
)
from azure.servicebus.management._utils import serialize_rule_key_values

from floworch.emulator import atom
from floworch.emulator.entities import (
    CorrelationFilter,
    EntityRuntimeInfo,
    QueueSettings,
    RuleSettings,
)
from floworch.runtime.servicebus.topology.durations import format_duration, parse_duration_or_never

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _xml(model: Model) -> ET.Element:
    """``model.serialize(is_xml=True)``: an Element, though the SDK types it as a mapping."""
    element = model.serialize(is_xml=True)
    assert isinstance(element, ET.Element)
    return element


def _sdk_queue_body(**kwargs: object) -> bytes:
    props = QueueProperties(
        "q",
        **{  # type: ignore[arg-type]
            "authorization_rules": None,
            "auto_delete_on_idle": None,
            "dead_lettering_on_message_expiration": None,
            "default_message_time_to_live": None,
            "duplicate_detection_history_time_window": None,
            "availability_status": None,
            "enable_batched_operations": None,
            "enable_express": None,
            "enable_partitioning": None,
            "lock_duration": None,
            "max_delivery_count": None,
            "max_size_in_megabytes": None,
            "requires_duplicate_detection": None,
            "requires_session": None,
            "status": None,
            "forward_to": None,
            "user_metadata": None,
            "forward_dead_lettered_messages_to": None,
            "max_message_size_in_kilobytes": None,
            **kwargs,
        },
    )
    body = CreateQueueBody(
        content=CreateQueueBodyContent(queue_description=props._to_internal_entity("ns.example"))
    )
    return ET.tostring(_xml(body))


def test_parses_the_sdk_queue_body() -> None:
    body = _sdk_queue_body(
        lock_duration=timedelta(seconds=45),
        max_delivery_count=4,
        forward_to="other",
        requires_session=True,
    )
    queue = atom.parse_queue(body, "q")
    assert queue.lock_duration == timedelta(seconds=45)
    assert queue.max_delivery_count == 4
    assert queue.requires_session is True
    assert queue.forward_to == "other"  # sb://ns.example/other -> other
    assert queue.default_message_ttl is None


def test_rendered_queue_entry_reads_back_through_the_sdk() -> None:
    settings = QueueSettings(name="q", lock_duration=timedelta(seconds=5), forward_to="x")
    info = EntityRuntimeInfo(
        created_at=NOW,
        updated_at=NOW,
        accessed_at=NOW,
        active_message_count=2,
        dead_letter_message_count=1,
    )
    entry = atom.queue_entry(settings, info, self_url="https://h/q", namespace_host="h:1")
    parsed = QueueDescriptionEntry.deserialize(ET.fromstring(atom.render_entry(entry)))
    assert parsed.content is not None
    description = parsed.content.queue_description
    assert description.lock_duration == timedelta(seconds=5)
    assert description.message_count == 3
    assert description.message_count_details is not None
    assert description.message_count_details.active_message_count == 2
    assert description.forward_to == "sb://h:1/x"
    assert description.created_at == NOW
    # and the rendered body parses back to the same settings
    assert atom.parse_queue(atom.render_entry(entry), "q") == settings


def test_rule_with_correlation_properties_round_trips_the_sdk_format() -> None:
    rule = RuleProperties(
        "r",
        filter=CorrelationRuleFilter(
            label="l",
            properties={
                "s": "x",
                "i": 3,
                "b": False,
                "f": 1.5,
                "d": NOW,
                "t": timedelta(minutes=1),
            },
        ),
        action=None,
        created_at_utc=None,
    )
    body = CreateRuleBody(
        content=CreateRuleBodyContent(rule_description=rule._to_internal_entity())
    )
    element = _xml(body)
    serialize_rule_key_values(element, rule)  # type: ignore[no-untyped-call]  # untyped in the SDK
    parsed = atom.parse_rule(ET.tostring(element), "t", "s", "r")
    assert isinstance(parsed.filter, CorrelationFilter)
    assert parsed.filter.subject == "l"
    assert dict(parsed.filter.properties) == {
        "s": "x",
        "i": 3,
        "b": False,
        "f": 1.5,
        "d": NOW,
        "t": timedelta(minutes=1),
    }
    rendered = atom.render_entry(atom.rule_entry(parsed, self_url="https://h/r"))
    assert atom.parse_rule(rendered, "t", "s", "r") == parsed


def test_sql_action_round_trips() -> None:
    rule = RuleSettings(topic_name="t", subscription_name="s", name="r", action="SET a = 1")
    rendered = atom.render_entry(atom.rule_entry(rule, self_url="https://h/r"))
    assert atom.parse_rule(rendered, "t", "s", "r") == rule


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<entry",
        b"<entry xmlns='http://www.w3.org/2005/Atom'/>",
        b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>",
    ],
)
def test_bad_bodies_raise_atom_format_error(body: bytes) -> None:
    with pytest.raises(atom.AtomFormatError):
        atom.parse_queue(body, "q")


def test_bad_values_raise_atom_format_error() -> None:
    body = _sdk_queue_body(max_delivery_count=1).replace(b">1<", b">many<")
    with pytest.raises(atom.AtomFormatError, match="MaxDeliveryCount"):
        atom.parse_queue(body, "q")


def test_infinite_durations() -> None:
    assert format_duration(None) == "P10675199DT2H48M5.4775807S"
    assert parse_duration_or_never("P10675199DT2H48M5.4775807S") is None
    assert format_duration(timedelta(days=1, seconds=61.5)) == "P1DT1M1.5S"
    assert format_duration(timedelta(0)) == "PT0S"
