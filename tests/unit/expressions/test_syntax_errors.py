"""Syntax errors from compile_value: what, where (1-based column) and a hint."""

from __future__ import annotations

import pickle

import pytest

from floworch.errors import FlowError
from floworch.expressions import (
    KNOWN_FUNCTIONS,
    ExpressionError,
    ExpressionSyntaxError,
    compile_value,
)


def syntax_error(text: str) -> ExpressionSyntaxError:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_value(text)
    return info.value


def test_unexpected_token_message_and_column() -> None:
    error = syntax_error("@triggerBody().a)")
    assert str(error) == "unexpected ')' at column 17"
    assert error.column == 17
    assert error.expression == "@triggerBody().a)"


def test_syntax_error_is_an_expression_error() -> None:
    assert isinstance(syntax_error("@"), ExpressionError)


def test_unknown_function_lists_known_functions() -> None:
    error = syntax_error("@coalesce(triggerBdy(), 1)")
    assert error.column == 11
    assert error.message == "unknown function 'triggerBdy'"
    assert error.hint == "known functions: " + ", ".join(KNOWN_FUNCTIONS)
    assert "triggerBody" in KNOWN_FUNCTIONS
    assert "steps" in KNOWN_FUNCTIONS


def test_function_names_are_case_sensitive() -> None:
    assert syntax_error("@TriggerBody()").message == "unknown function 'TriggerBody'"


def test_wrong_arity_shows_usage() -> None:
    error = syntax_error("@length(1, 2)")
    assert str(error) == (
        "length() takes exactly 1 argument, got 2 at column 2; usage: length(collection)"
    )


def test_too_few_arguments_for_variadic() -> None:
    assert syntax_error("@and(true)").message == "and() takes at least 2 arguments, got 1"


def test_steps_needs_a_literal_key() -> None:
    error = syntax_error("@steps(concat('a', 'b')).output")
    assert error.message == "steps() takes exactly one step key as a quoted literal"


def test_steps_allows_only_known_fields() -> None:
    error = syntax_error("@steps('a').outputs")
    assert (error.message, error.column) == (
        "steps('a') has only .output, .status and .error",
        12,
    )


def test_error_column_inside_interpolation_counts_from_string_start() -> None:
    error = syntax_error("Order @{triggerBody(} shipped")
    assert error.column == 21
    assert error.expression == "Order @{triggerBody(} shipped"


def test_unterminated_interpolation() -> None:
    error = syntax_error("Order @{triggerBody()")
    assert (error.message, error.hint, error.column) == ("unterminated '@{'", "expected '}'", 22)


def test_empty_interpolation() -> None:
    assert syntax_error("a @{ } b").message == "empty expression in '@{}'"


def test_empty_whole_value_expression() -> None:
    assert str(syntax_error("@")) == "empty expression after '@' at column 2"


def test_unterminated_string_points_at_its_quote() -> None:
    error = syntax_error("@concat('abc")
    assert (error.message, error.column) == ("unterminated string literal", 9)


def test_double_quotes_are_explained() -> None:
    assert syntax_error('@concat("a")').hint == "strings use single quotes, e.g. 'text'"


def test_bare_name_is_rejected() -> None:
    error = syntax_error("@triggerBody()[name]")
    assert (error.message, error.column) == ("unknown name 'name'", 16)


def test_operators_are_not_allowed_in_values() -> None:
    error = syntax_error("@triggerBody().n == 1")
    assert error.message == "unexpected '=='"
    assert "equals()" in error.hint


def test_operators_are_not_allowed_in_interpolation() -> None:
    assert syntax_error("x @{1 == 1}").message == "unexpected '=='"


def test_property_name_must_follow_dot() -> None:
    error = syntax_error("@triggerBody().1")
    assert (error.message, error.column) == ("unexpected '1'", 16)


def test_member_access_on_literal_is_rejected() -> None:
    assert syntax_error("@'abc'.length").message == "unexpected '.'"


def test_trailing_comma_is_rejected() -> None:
    assert syntax_error("@concat('a',)").message == "unexpected ')'"


def test_number_followed_by_letters() -> None:
    assert syntax_error("@concat(12abc)").message == "unexpected 'a' after number"


def test_number_too_long() -> None:
    assert syntax_error("@" + "9" * 5000).message == "number literal is too long"


def test_number_out_of_range() -> None:
    assert syntax_error("@1e999").message == "number literal is out of range"


def test_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    error = syntax_error("@" + "string(" * 500 + "1" + ")" * 500)
    assert error.message.startswith("expression is nested too deeply")


def test_non_ascii_identifier_is_rejected() -> None:
    assert syntax_error("@triggerBody().naïve").message == "unexpected character 'ï'"


def test_pointer_marks_the_column() -> None:
    assert syntax_error("@x(").pointer() == "@x(\n ^"


def test_syntax_error_pickles() -> None:
    error = syntax_error("@nope()")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.column, copy.expression) == (str(error), error.column, error.expression)


def test_expression_errors_belong_to_the_flow_error_tree() -> None:
    assert issubclass(ExpressionError, FlowError)
