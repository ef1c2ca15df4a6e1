"""Rule filters and actions compiled to per-message calls."""

from __future__ import annotations

from typing import Any

import pytest

from floworch.emulator.entities import (
    CorrelationFilter,
    FalseFilter,
    SqlFilter,
    TrueFilter,
)
from floworch.emulator.filters import FilterMessage, compile_rule_action, compile_rule_filter
from floworch.emulator.sqlfilter import SqlFilterError


def test_true_and_false_filters() -> None:
    assert compile_rule_filter(TrueFilter())(FilterMessage())
    assert not compile_rule_filter(FalseFilter())(FilterMessage())


def test_correlation_filter_needs_every_system_property_to_match() -> None:
    flt = CorrelationFilter(correlation_id="c", subject="order", to="x", content_type="json")
    predicate = compile_rule_filter(flt)
    good = FilterMessage(correlation_id="c", subject="order", to="x", content_type="json")
    assert predicate(good)
    for change in ("correlation_id", "subject", "to", "content_type"):
        bad = good.copy()
        setattr(bad, change, "other")
        assert not predicate(bad), change


def _only(attr: str, value: str) -> dict[str, Any]:
    """Keyword arguments setting one property named at run time (mypy cannot follow the name)."""
    return {attr: value}


@pytest.mark.parametrize(
    "attr",
    ["message_id", "reply_to", "session_id", "reply_to_session_id"],
)
def test_correlation_filter_covers_each_system_property(attr: str) -> None:
    predicate = compile_rule_filter(CorrelationFilter(**_only(attr, "v")))
    assert predicate(FilterMessage(**_only(attr, "v")))
    assert not predicate(FilterMessage(**_only(attr, "w")))
    assert not predicate(FilterMessage())


def test_correlation_filter_application_properties() -> None:
    predicate = compile_rule_filter(CorrelationFilter(properties={"tenant": "a", "n": 1}))
    assert predicate(FilterMessage(properties={"tenant": "a", "n": 1, "extra": 2}))
    assert not predicate(FilterMessage(properties={"tenant": "a"}))
    assert not predicate(FilterMessage(properties={"tenant": "a", "n": 2}))
    # True is not 1 in Service Bus even though it is in Python
    assert not predicate(FilterMessage(properties={"tenant": "a", "n": True}))


def test_empty_correlation_filter_matches_everything() -> None:
    assert compile_rule_filter(CorrelationFilter())(FilterMessage(subject="x"))


def test_correlation_filter_is_an_immutable_value() -> None:
    props = {"a": 1}
    flt = CorrelationFilter(properties=props)
    props["a"] = 2
    assert flt.properties["a"] == 1
    assert flt == CorrelationFilter(properties={"a": 1})
    assert hash(flt) == hash(CorrelationFilter(properties={"a": 1}))
    with pytest.raises(TypeError):
        flt.properties["a"] = 3  # type: ignore[index]


def test_sql_filter_and_action() -> None:
    predicate = compile_rule_filter(SqlFilter("sys.Label = 'order' AND amount > 10"))
    assert predicate(FilterMessage(subject="order", properties={"amount": 11}))
    assert not predicate(FilterMessage(subject="order", properties={"amount": 9}))
    action = compile_rule_action("SET user.big = TRUE")
    original = FilterMessage(properties={"amount": 11})
    routed = original.copy()
    action(routed)
    assert routed.properties == {"amount": 11, "big": True}
    assert original.properties == {"amount": 11}  # copies do not share properties


def test_no_action_does_nothing() -> None:
    message = FilterMessage(properties={"a": 1})
    compile_rule_action(None)(message)
    assert message.properties == {"a": 1}


def test_bad_sql_is_rejected_at_compile_time() -> None:
    with pytest.raises(SqlFilterError):
        compile_rule_filter(SqlFilter("a = "))
    with pytest.raises(SqlFilterError):
        compile_rule_action("SET")


def test_system_property_lookup_by_service_bus_name() -> None:
    message = FilterMessage(subject="s", sequence_number=3)
    assert message.system_property("Label") == "s"
    assert message.system_property("sequencenumber") == 3
    with pytest.raises(KeyError):
        message.system_property("Nope")
