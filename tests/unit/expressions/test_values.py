"""compile_value: whole-value expressions, interpolation, escapes, containers, metadata."""

from __future__ import annotations

from typing import Any

import pytest

from floworch.expressions import (
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    compile_value,
    compile_value_errors,
    is_expression,
)

from .fakes import FakeContext, succeeded


def resolve(value: Any, ctx: FakeContext | None = None) -> Any:
    return compile_value(value).resolve(ctx or FakeContext())


# -- whole-value expressions -------------------------------------------------------------


def test_whole_value_expression_keeps_json_type() -> None:
    ctx = FakeContext({"order": {"items": [1, 2, 3]}})
    assert resolve("@triggerBody().order.items", ctx) == [1, 2, 3]


def test_whole_value_number_literal() -> None:
    assert resolve("@42") == 42


def test_whole_value_string_literal_with_escaped_quote() -> None:
    assert resolve("@'it''s'") == "it's"


def test_whole_value_allows_surrounding_whitespace_after_at() -> None:
    assert resolve("@ triggerBody() ", FakeContext({"a": 1})) == {"a": 1}


def test_whole_value_keywords() -> None:
    assert resolve("@true") is True
    assert resolve("@false") is False
    assert resolve("@null") is None


# -- interpolation -----------------------------------------------------------------------


def test_interpolation_renders_values_into_text() -> None:
    ctx = FakeContext({"id": 42})
    assert resolve("Order @{triggerBody()?.id} shipped", ctx) == "Order 42 shipped"


def test_interpolation_renders_non_strings_as_compact_json() -> None:
    ctx = FakeContext({"a": {"b": [1, True, None]}})
    assert resolve("v=@{triggerBody().a}", ctx) == 'v={"b":[1,true,null]}'


def test_interpolation_renders_null_as_json_null() -> None:
    assert resolve("x=@{triggerBody()?.missing}", FakeContext({})) == "x=null"


def test_interpolation_inserts_strings_without_quotes() -> None:
    assert resolve("Hi @{triggerBody().name}!", FakeContext({"name": "Ada"})) == "Hi Ada!"


def test_interpolation_with_several_segments() -> None:
    ctx = FakeContext({"a": 1, "b": "two"})
    assert resolve("@{triggerBody().a}-@{triggerBody().b}-end", ctx) == "1-two-end"


def test_string_starting_with_interpolation_is_a_string() -> None:
    assert resolve("@{triggerBody().n}", FakeContext({"n": 5})) == "5"


def test_interpolation_closing_brace_inside_string_literal_is_not_the_end() -> None:
    assert resolve("[@{concat('}', 'x')}]") == "[}x]"


# -- escapes -----------------------------------------------------------------------------


def test_double_at_at_start_is_a_literal_at() -> None:
    assert resolve("@@mention") == "@mention"


def test_double_at_before_brace_is_a_literal_interpolation_marker() -> None:
    assert resolve("use @@{name} to insert") == "use @{name} to insert"


def test_at_sign_inside_text_is_literal() -> None:
    assert resolve("mail bob@example.com") == "mail bob@example.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("@triggerBody()", True),
        ("@{x}", True),
        ("a @{x} b", True),
        ("@@literal", False),
        ("a @@{x} b", False),
        ("@@{x}", False),
        ("bob@example.com", False),
        ("plain", False),
        ("", False),
        (42, False),
        (None, False),
        (["@x"], False),
    ],
)
def test_is_expression(value: object, expected: bool) -> None:
    assert is_expression(value) is expected


# -- containers --------------------------------------------------------------------------


def test_dicts_and_lists_are_walked_recursively() -> None:
    ctx = FakeContext({"id": 7, "tags": ["a"]})
    value = {
        "id": "@triggerBody().id",
        "nested": {"label": "order-@{triggerBody().id}", "tags": ["@triggerBody().tags", "x"]},
        "count": 3,
    }
    assert resolve(value, ctx) == {
        "id": 7,
        "nested": {"label": "order-7", "tags": [["a"], "x"]},
        "count": 3,
    }


def test_resolve_returns_fresh_containers() -> None:
    compiled = compile_value({"list": [1, 2]})
    first = compiled.resolve(FakeContext())
    first["list"].append(3)
    assert compiled.resolve(FakeContext()) == {"list": [1, 2]}


def test_non_string_scalars_are_literals() -> None:
    assert resolve({"n": 1.5, "b": False, "z": None}) == {"n": 1.5, "b": False, "z": None}


def test_literal_value_is_marked_literal() -> None:
    assert compile_value({"a": ["x", 1, "@@y"]}).is_literal is True
    assert compile_value({"a": ["@item()"]}).is_literal is False


# -- metadata ----------------------------------------------------------------------------


def test_step_references_collects_literal_keys_everywhere() -> None:
    value = {
        "a": "@steps('fetch').output",
        "b": ["x @{steps('price').status} y", "@coalesce(steps('cache')?.output, 1)"],
        "c": "@triggerBody()[steps('keyer').output]",
    }
    assert compile_value(value).step_references == frozenset({"fetch", "price", "cache", "keyer"})


def test_step_references_is_empty_without_steps() -> None:
    assert compile_value("@triggerBody()").step_references == frozenset()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("@item()", True),
        ({"x": ["n=@{index()}"]}, True),
        ("@coalesce(item()?.a, 1)", True),
        ("@triggerBody()", False),
        ("item()", False),
    ],
)
def test_uses_item(value: Any, expected: bool) -> None:
    assert compile_value(value).uses_item is expected


def test_resolve_reads_only_referenced_steps() -> None:
    ctx = FakeContext(steps={"a": succeeded(1), "b": succeeded(2)})
    assert resolve("@steps('b').output", ctx) == 2
    assert ctx.step_lookups == ["b"]


def test_item_and_index_inside_foreach() -> None:
    ctx = FakeContext(item={"sku": "A1"}, index=3)
    assert resolve("#@{index()}: @{item().sku}", ctx) == "#3: A1"


def test_item_outside_foreach_is_an_evaluation_error() -> None:
    with pytest.raises(ExpressionEvaluationError, match="only available inside a ForEach"):
        resolve("@item()")


# -- errors ------------------------------------------------------------------------------


def test_compile_value_raises_first_syntax_error() -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_value({"a": "@ok()", "b": "@bad("})
    assert info.value.expression == "@ok()"


def test_compile_value_errors_collects_all_with_paths() -> None:
    value = {
        "order": {"items": ["fine", "@triggerBody()", "@nope()"], "note": "x @{ ) }"},
        "X-Id": "@",
        "list": [["@triggerBody("]],
    }
    errors = compile_value_errors(value)
    assert [path for path, _ in errors] == [
        "order.items[2]",
        "order.note",
        "['X-Id']",
        "list[0][0]",
    ]
    assert all(isinstance(error, ExpressionSyntaxError) for _, error in errors)


def test_compile_value_errors_path_of_top_level_string_is_empty() -> None:
    [(path, error)] = compile_value_errors("@)")
    assert path == ""
    assert error.column == 2


def test_compile_value_errors_is_empty_for_valid_value() -> None:
    assert compile_value_errors({"a": ["@triggerBody()", "x"]}) == []


def test_evaluation_error_carries_expression_and_value_path() -> None:
    compiled = compile_value({"order": {"items": ["ok", "@triggerBody().missing"]}})
    with pytest.raises(ExpressionEvaluationError) as info:
        compiled.resolve(FakeContext({}))
    assert info.value.expression == "@triggerBody().missing"
    assert info.value.value_path == "order.items[1]"


def test_evaluation_error_in_interpolation_carries_whole_string() -> None:
    with pytest.raises(ExpressionEvaluationError) as info:
        resolve("a @{triggerBody().x} b", FakeContext({}))
    assert info.value.expression == "a @{triggerBody().x} b"
    assert info.value.value_path == ""
