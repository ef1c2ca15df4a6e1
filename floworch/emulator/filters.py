"""Subscription rule evaluation: filters and actions compiled once into per-message calls.

The broker builds one :class:`FilterMessage` per published message, asks every rule's compiled
filter whether it matches and, for each matching rule, applies the rule's compiled action to a
:meth:`FilterMessage.copy` before delivering that copy to the subscription.
"""

from __future__ import annotations

from collections.abc import Callable

from floworch.emulator.entities import (
    CorrelationFilter,
    FalseFilter,
    PropertyValue,
    RuleFilter,
    SqlFilter,
    TrueFilter,
)
from floworch.emulator.filter_message import FilterMessage
from floworch.emulator.sqlfilter import compile_sql_action, compile_sql_filter

__all__ = [
    "FilterMessage",
    "MessageAction",
    "MessagePredicate",
    "compile_rule_action",
    "compile_rule_filter",
]

MessagePredicate = Callable[[FilterMessage], bool]
MessageAction = Callable[[FilterMessage], None]


def _correlation_predicate(flt: CorrelationFilter) -> MessagePredicate:
    checks: list[tuple[str, str]] = [
        (attr, value)
        for attr, value in (
            ("correlation_id", flt.correlation_id),
            ("message_id", flt.message_id),
            ("to", flt.to),
            ("reply_to", flt.reply_to),
            ("subject", flt.subject),
            ("session_id", flt.session_id),
            ("reply_to_session_id", flt.reply_to_session_id),
            ("content_type", flt.content_type),
        )
        if value is not None
    ]
    wanted = dict(flt.properties)

    def matches(message: FilterMessage) -> bool:
        for attr, value in checks:
            if getattr(message, attr) != value:
                return False
        for key, expected in wanted.items():
            if key not in message.properties:
                return False
            if not _same_value(message.properties[key], expected):
                return False
        return True

    return matches


def _same_value(actual: PropertyValue, expected: PropertyValue) -> bool:
    # bool is an int in Python; Service Bus keeps them apart, so True must not equal 1.
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    return actual == expected


def compile_rule_filter(rule_filter: RuleFilter) -> MessagePredicate:
    """Compile a rule filter once into a predicate the broker calls per message.

    A correlation filter matches when every system property it sets and every application
    property it lists is present and equal (an empty correlation filter matches everything).

    Raises:
        floworch.emulator.sqlfilter.SqlFilterError: when a SQL filter does not parse.
    """
    if isinstance(rule_filter, TrueFilter):
        return lambda _message: True
    if isinstance(rule_filter, FalseFilter):
        return lambda _message: False
    if isinstance(rule_filter, CorrelationFilter):
        return _correlation_predicate(rule_filter)
    if isinstance(rule_filter, SqlFilter):
        return compile_sql_filter(rule_filter.sql_expression).matches
    raise TypeError(f"not a rule filter: {rule_filter!r}")


def compile_rule_action(action: str | None) -> MessageAction:
    """Compile a rule action into a callable that mutates a message; ``None`` does nothing.

    Raises:
        floworch.emulator.sqlfilter.SqlFilterError: when the action does not parse.
    """
    if action is None:
        return lambda _message: None
    return compile_sql_action(action).apply
