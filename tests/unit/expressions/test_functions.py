"""Built-in functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from floworch.expressions import ExpressionEvaluationError, compile_value

from .fakes import FakeContext


def resolve(text: str, ctx: FakeContext | None = None) -> Any:
    return compile_value(text).resolve(ctx or FakeContext())


def error_of(text: str, ctx: FakeContext | None = None) -> str:
    with pytest.raises(ExpressionEvaluationError) as info:
        resolve(text, ctx)
    return str(info.value)


# -- coalesce ----------------------------------------------------------------------------


def test_coalesce_returns_default_for_missing() -> None:
    assert resolve("@coalesce(triggerBody()?.x, 'default')", FakeContext({})) == "default"


def test_coalesce_returns_first_non_null() -> None:
    assert resolve("@coalesce(null, triggerBody()?.x, 'd')", FakeContext({"x": 0})) == 0


def test_coalesce_of_all_nulls_is_null() -> None:
    assert resolve("@coalesce(null, null)") is None


def test_coalesce_does_not_evaluate_after_first_non_null() -> None:
    assert resolve("@coalesce('a', triggerBody().missing)", FakeContext({})) == "a"


# -- concat / length / contains ----------------------------------------------------------


def test_concat_strings() -> None:
    assert resolve("@concat('a', 'b', 'c')") == "abc"


def test_concat_renders_non_strings_as_json() -> None:
    assert resolve("@concat('n=', 1, ' ', true, ' ', null)") == "n=1 true null"


def test_concat_arrays() -> None:
    assert resolve(
        "@concat(triggerBody().a, triggerBody().b)", FakeContext({"a": [1], "b": [2]})
    ) == [
        1,
        2,
    ]


@pytest.mark.parametrize(("body", "expected"), [("abc", 3), ([1, 2], 2), ({"a": 1}, 1), ("", 0)])
def test_length(body: Any, expected: int) -> None:
    assert resolve("@length(triggerBody())", FakeContext(body)) == expected


def test_length_of_number_is_an_error() -> None:
    assert error_of("@length(5)") == "length(): expects a string, array or object, got number 5"


@pytest.mark.parametrize(
    ("body", "needle", "expected"),
    [
        ("hello world", "'lo w'", True),
        ("hello", "'x'", False),
        ([1, 2, 3], "2", True),
        ([1, 2, 3], "2.0", True),
        ([1, 2, 3], "'2'", False),
        ([True], "1", False),
        ({"key": 1}, "'key'", True),
        ({"key": 1}, "'nope'", False),
    ],
)
def test_contains(body: Any, needle: str, expected: bool) -> None:
    assert resolve(f"@contains(triggerBody(), {needle})", FakeContext(body)) is expected


def test_contains_string_with_number_is_an_error() -> None:
    assert "needs a string, got number 1" in error_of("@contains('abc', 1)")


def test_contains_in_number_is_an_error() -> None:
    assert "expects a string, array or object" in error_of("@contains(1, 1)")


# -- logic -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@equals(1, 1.0)", True),
        ("@equals('a', 'a')", True),
        ("@equals(1, '1')", False),
        ("@equals(true, 1)", False),
        ("@equals(null, null)", True),
        ("@not(false)", True),
        ("@and(true, true, false)", False),
        ("@and(true, true)", True),
        ("@or(false, true)", True),
        ("@or(false, false)", False),
        ("@if(true, 'yes', 'no')", "yes"),
        ("@if(false, 'yes', 'no')", "no"),
    ],
)
def test_logic_functions(expression: str, expected: Any) -> None:
    assert resolve(expression) == expected


def test_equals_compares_objects_deeply() -> None:
    ctx = FakeContext({"a": {"x": [1, 2]}, "b": {"x": [1, 2.0]}})
    assert resolve("@equals(triggerBody().a, triggerBody().b)", ctx) is True


def test_if_evaluates_only_the_chosen_branch() -> None:
    assert resolve("@if(true, 1, triggerBody().missing)", FakeContext({})) == 1


def test_and_short_circuits() -> None:
    assert resolve("@and(false, triggerBody().missing)", FakeContext({})) is False


def test_or_short_circuits() -> None:
    assert resolve("@or(true, triggerBody().missing)", FakeContext({})) is True


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("@not('yes')", "not(): argument 1 must be a boolean, got string 'yes'"),
        ("@and(true, 1)", "and(): argument 2 must be a boolean, got number 1"),
        ("@or(null, true)", "or(): argument 1 must be a boolean, got null"),
        ("@if('x', 1, 2)", "if(): argument 1 must be a boolean, got string 'x'"),
    ],
)
def test_logic_functions_need_booleans(expression: str, message: str) -> None:
    assert error_of(expression) == message


# -- conversions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@string(1)", "1"),
        ("@string('a')", "a"),
        ("@string(true)", "true"),
        ("@string(null)", "null"),
        ("@int('42')", 42),
        ("@int(' -7 ')", -7),
        ("@int(3.0)", 3),
        ("@int(5)", 5),
        ("@float('2.5')", 2.5),
        ("@float(2)", 2.0),
        ("@float('1e3')", 1000.0),
        ("@bool('true')", True),
        ("@bool('FALSE')", False),
        ("@bool(0)", False),
        ("@bool(2)", True),
        ("@bool(false)", False),
        ("@json('{\"a\": [1, 2]}')", {"a": [1, 2]}),
        ("@json('3')", 3),
    ],
)
def test_conversions(expression: str, expected: Any) -> None:
    result = resolve(expression)
    assert result == expected
    assert type(result) is type(expected)


def test_string_of_object_is_compact_json() -> None:
    assert resolve("@string(triggerBody())", FakeContext({"a": [1]})) == '{"a":[1]}'


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("@int('4.5')", "int(): cannot convert string '4.5' to an integer"),
        ("@int(4.5)", "int(): number 4.5 is not a whole number"),
        ("@int(true)", "int(): cannot convert boolean true"),
        ("@int(null)", "int(): cannot convert null"),
        ("@float('abc')", "float(): cannot convert string 'abc'"),
        ("@float('nan')", "float(): cannot convert string 'nan'"),
        ("@bool('yes')", "bool(): cannot convert string 'yes'"),
        ("@json('{oops')", "json(): invalid JSON"),
        ("@json('NaN')", "json(): invalid JSON"),
        ("@json(3)", "json(): expects a string of JSON text, got number 3"),
    ],
)
def test_conversion_errors(expression: str, fragment: str) -> None:
    assert fragment in error_of(expression)


def test_int_of_huge_text_is_an_evaluation_error() -> None:
    assert "too long" in error_of("@int(triggerBody())", FakeContext("9" * 5000))


def test_float_of_huge_int_is_an_evaluation_error() -> None:
    assert "too large" in error_of("@float(triggerBody())", FakeContext(10**400))


# -- time --------------------------------------------------------------------------------


def test_utc_now_formats_context_time() -> None:
    assert resolve("@utcNow()") == "2024-05-17T12:30:45.123456Z"


def test_utc_now_converts_other_timezones_to_utc() -> None:
    moment = datetime(2024, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    assert resolve("@utcNow()", FakeContext(now=moment)) == "2024-01-01T08:00:00.000000Z"


def test_add_seconds() -> None:
    assert resolve("@addSeconds(utcNow(), 15)") == "2024-05-17T12:31:00.123456Z"


def test_add_seconds_negative_and_fractional() -> None:
    assert resolve("@addSeconds('2024-01-01T00:00:00Z', -0.5)") == "2023-12-31T23:59:59.500000Z"


def test_add_seconds_accepts_offsets() -> None:
    assert resolve("@addSeconds('2024-01-01T02:00:00+02:00', 0)") == "2024-01-01T00:00:00.000000Z"


def test_add_seconds_treats_naive_timestamps_as_utc() -> None:
    assert resolve("@addSeconds('2024-01-01T00:00:00', 60)") == "2024-01-01T00:01:00.000000Z"


def test_add_seconds_rejects_non_timestamps() -> None:
    assert "string 'soon' is not an ISO-8601 timestamp" in error_of("@addSeconds('soon', 1)")


def test_add_seconds_rejects_non_numbers() -> None:
    assert "argument 2 must be a number" in error_of("@addSeconds(utcNow(), '5')")


def test_add_seconds_out_of_range() -> None:
    assert "outside the supported date range" in error_of("@addSeconds('9999-12-31T23:59:59Z', 10)")


def test_utc_now_is_parsable_by_python() -> None:
    text = resolve("@utcNow()")
    assert datetime.fromisoformat(text) == datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)
