"""The Service Bus SQL filter language: operators, NULL logic, errors with columns, actions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floworch.emulator.filters import FilterMessage
from floworch.emulator.sqlfilter import (
    SqlFilterError,
    compile_sql_action,
    compile_sql_filter,
)


def msg(**properties: object) -> FilterMessage:
    return FilterMessage(
        message_id="m-1",
        subject="order",
        correlation_id="c-1",
        sequence_number=42,
        enqueued_time_utc=datetime(2024, 1, 1, tzinfo=UTC),
        properties=dict(properties),  # type: ignore[arg-type]
    )


def evaluate(text: str, **properties: object) -> object:
    return compile_sql_filter(text).evaluate(msg(**properties))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = 5", True),
        ("a = 6", False),
        ("a <> 6", True),
        ("a != 5", False),
        ("a > 4", True),
        ("a < 4", False),
        ("a >= 5", True),
        ("a <= 4", False),
        ("a = 5.0", True),  # long and double compare numerically
        ("s = 'x''y'", True),  # '' escapes a quote
        ("s > 'a'", True),
        ("b = TRUE", True),
        ("b = false", False),
    ],
)
def test_comparisons(text: str, expected: bool) -> None:
    assert evaluate(text, a=5, s="x'y", b=True) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + 2 = 7", True),
        ("a - 7 = -2", True),
        ("a * 3 = 15", True),
        ("a / 2 = 2", True),  # long division truncates, like .NET
        ("-a / 2 = -2", True),  # toward zero, not floor
        ("a % 3 = 2", True),
        ("-a % 3 = -2", True),  # remainder takes the dividend's sign
        ("a / 2.0 = 2.5", True),
        ("2 + 3 * 4 = 14", True),  # precedence
        ("(2 + 3) * 4 = 20", True),
        ("- -a = 5", True),
        ("+a = 5", True),
        ("s + 'z' = 'yz'", True),
        ("1e2 = 100", True),
    ],
)
def test_arithmetic(text: str, expected: bool) -> None:
    assert evaluate(text, a=5, s="y") is expected


def test_division_by_zero_and_overflow_are_null() -> None:
    assert evaluate("a / 0", a=5) is None
    assert evaluate("a % 0", a=5) is None
    assert evaluate("9223372036854775807 + 1") is None
    assert evaluate("-9223372036854775808 = -9223372036854775807 - 1") is True


def test_three_valued_logic() -> None:
    # missing is NULL; comparisons with NULL are unknown
    assert evaluate("missing = 1") is None
    assert evaluate("NOT (missing = 1)") is None
    assert evaluate("missing = 1 AND a = 5", a=5) is None
    assert evaluate("missing = 1 AND a = 6", a=5) is False
    assert evaluate("missing = 1 OR a = 5", a=5) is True
    assert evaluate("missing = 1 OR a = 6", a=5) is None
    assert evaluate("NULL = NULL") is None
    assert not compile_sql_filter("missing = 1").matches(msg())
    assert not compile_sql_filter("NOT (missing = 1)").matches(msg())


def test_mismatched_types_are_unknown() -> None:
    assert evaluate("s = 1", s="1") is None
    assert evaluate("b > FALSE", b=True) is None  # booleans have no order


def test_precedence_of_not_and_or() -> None:
    # NOT binds tighter than AND, AND tighter than OR
    assert evaluate("NOT a = 1 AND a = 2", a=2) is True
    assert evaluate("a = 1 OR a = 2 AND a = 3", a=1) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("c IN ('red', 'blue')", True),
        ("c IN ('green')", False),
        ("c NOT IN ('green', 'pink')", True),
        ("c NOT IN ('red')", False),
        ("a IN (1, 2, 3)", True),
        ("missing IN (1)", None),
        ("c IN ('x', missing)", None),
        ("c IN ('red', missing)", True),
    ],
)
def test_in(text: str, expected: object) -> None:
    assert evaluate(text, c="red", a=2) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("'ord%'", "order", True),
        ("'ord%'", "border", False),
        ("'%der'", "order", True),
        ("'o_der'", "order", True),
        ("'o_der'", "ooder!", False),
        ("'100!%' ESCAPE '!'", "100%", True),
        ("'100!%' ESCAPE '!'", "1000", False),
        ("'a.c'", "abc", False),  # regex metacharacters are literal
        ("'%'", "", True),
    ],
)
def test_like(pattern: str, value: str, expected: bool) -> None:
    assert evaluate(f"v LIKE {pattern}", v=value) is expected
    assert evaluate(f"v NOT LIKE {pattern}", v=value) is (not expected)


def test_like_on_null_and_non_string_is_unknown() -> None:
    assert evaluate("missing LIKE 'a%'") is None
    assert evaluate("n LIKE 'a%'", n=5) is None


def test_is_null_and_exists() -> None:
    assert evaluate("missing IS NULL") is True
    assert evaluate("a IS NULL", a=1) is False
    assert evaluate("a IS NOT NULL", a=1) is True
    assert evaluate("EXISTS(a)", a=None) is True  # present with a null value
    assert evaluate("EXISTS(missing)") is False
    assert evaluate("NOT EXISTS(missing)") is True
    assert evaluate("EXISTS(sys.SessionId)") is False
    assert evaluate("EXISTS(sys.MessageId)") is True


def test_system_and_user_scopes_and_names() -> None:
    assert evaluate("sys.Label = 'order'") is True
    assert evaluate("SYS.label = 'order'") is True  # system names are case-insensitive
    assert evaluate("sys.Subject = 'order'") is True
    assert evaluate("sys.SequenceNumber = 42") is True
    assert evaluate("user.a = 1", a=1) is True
    assert evaluate("a = 1", a=1) is True
    assert evaluate("[my prop] = 1", **{"my prop": 1}) is True
    assert evaluate("user.[odd]]name] = 1", **{"odd]name": 1}) is True
    assert evaluate("Label = 'order'") is None  # unscoped means user.Label, which is absent


def test_keywords_are_case_insensitive() -> None:
    assert evaluate("a = 1 and not (b = 2) Or c is null", a=1, b=3) is True
    assert evaluate("a In (1) AND a lIkE '%'", a=1) is None  # LIKE on a number is unknown
    assert evaluate("a = tRuE", a=True) is True


def test_newid_yields_a_guid() -> None:
    assert evaluate("newid() IS NOT NULL") is True


def test_non_boolean_results_do_not_match() -> None:
    assert not compile_sql_filter("a").matches(msg(a=1))
    assert compile_sql_filter("a").matches(msg(a=True))


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("a = ", 5, "expected a value"),
        ("a = 'x", 5, "unterminated string"),
        ("a == 1", 4, "expected a value"),
        ("(a = 1", 7, "')'"),
        ("a = 1)", 6, "unexpected ')'"),
        ("sys.Nope = 1", 5, "unknown system property"),
        ("foo.bar = 1", 1, "unknown scope"),
        ("a IN 1", 6, "'(' after IN"),
        ("a NOT 1", 7, "IN or LIKE"),
        ("a LIKE 'x' ESCAPE 'ab'", 19, "one-character"),
        ("a LIKE 5", 9, "string pattern"),
        ("a = 1 # 2", 7, "unexpected character"),
        ("frob(a) = 1", 1, "unknown function"),
        ("[a = 1", 1, "unterminated [bracketed]"),
        ("a IS 1", 6, "NULL after IS"),
        ("EXISTS a", 8, "'(' after EXISTS"),
        ("a = 99999999999999999999", 5, "out of range"),
        ("", 1, "expected a value"),
    ],
)
def test_syntax_errors_carry_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(SqlFilterError) as caught:
        compile_sql_filter(text)
    assert caught.value.column == column, caught.value
    assert fragment in caught.value.reason
    assert f"column {column}" in str(caught.value)


def test_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(SqlFilterError, match="nested too deeply"):
        compile_sql_filter("(" * 5000 + "1" + ")" * 5000)
    with pytest.raises(SqlFilterError, match="nested too deeply"):
        compile_sql_filter(" + ".join(["1"] * 5000))
    with pytest.raises(SqlFilterError, match="nested too deeply"):
        compile_sql_filter("NOT " * 5000 + "a")


def test_actions_set_and_remove() -> None:
    message = msg(a=5, tmp="x")
    compile_sql_action("SET user.b = a * 2; SET c = 'k' + 'v'; REMOVE tmp; REMOVE nope;").apply(
        message
    )
    assert message.properties == {"a": 5, "b": 10, "c": "kv"}
    compile_sql_action("set sys.Label = 'routed'").apply(message)
    assert message.subject == "routed"


@pytest.mark.parametrize(
    ("text", "column"),
    [("", 1), ("SET", 4), ("SET a 1", 7), ("DROP a", 1), ("SET a = 1 SET b = 2", 11)],
)
def test_action_syntax_errors(text: str, column: int) -> None:
    with pytest.raises(SqlFilterError) as caught:
        compile_sql_action(text)
    assert caught.value.column == column


_SQL_ALPHABET = st.sampled_from(
    [
        *list("ab1 0.'[]()=<>!+-*/%,;_e"),
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ESCAPE",
        "IS",
        "NULL",
        "EXISTS",
        "sys.",
        "user.",
        "TRUE",
        "'x'",
        "sys.Label",
        "newid()",
        " ",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_SQL_ALPHABET, max_size=25).map("".join)))
def test_any_text_compiles_or_raises_sql_filter_error(text: str) -> None:
    try:
        program = compile_sql_filter(text)
    except SqlFilterError as exc:
        assert 1 <= exc.column <= len(text) + 1
        return
    # A program that compiles never raises while evaluating either.
    result = program.matches(msg(a=1, b="x"))
    assert isinstance(result, bool)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_SQL_ALPHABET | st.sampled_from(["SET ", "REMOVE ", ";"]), max_size=25).map("".join)
)
def test_any_action_text_compiles_or_raises_sql_filter_error(text: str) -> None:
    try:
        program = compile_sql_action(text)
    except SqlFilterError:
        return
    program.apply(msg(a=1))
