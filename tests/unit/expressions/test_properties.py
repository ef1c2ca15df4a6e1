"""Property tests: compiling never crashes; resolving only raises ExpressionEvaluationError."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from floworch.expressions import (
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    compile_condition,
    compile_value,
)

from .fakes import FakeContext, failed, succeeded

_TOKENS = [
    "@",
    "@{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ".",
    "?.",
    "?[",
    ",",
    "'",
    "''",
    "'a'",
    "!",
    "==",
    "!=",
    "<",
    ">=",
    "&&",
    "||",
    "=",
    " ",
    "0",
    "-1",
    "2.5",
    "1e9",
    "true",
    "null",
    "triggerBody()",
    "steps('s')",
    "steps(",
    "item()",
    "index",
    "coalesce(",
    "concat(",
    "if(",
    "json(",
    "x",
    "-",
    '"',
    "\n",
    "@@",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["a", "b", "0", "X-Id"]) | st.text(max_size=4), children, max_size=4
        )
    ),
    max_leaves=12,
)

junk_text = st.text(max_size=40) | st.lists(st.sampled_from(_TOKENS), max_size=20).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=junk_text)
def test_compile_value_yields_compiled_or_syntax_error(text: str) -> None:
    try:
        compiled = compile_value(text)
    except ExpressionSyntaxError as error:
        assert 1 <= error.column <= len(text) + 1
        assert error.expression == text
    else:
        assert isinstance(compiled.step_references, frozenset)


@settings(max_examples=400, deadline=None)
@given(text=junk_text)
def test_compile_condition_yields_compiled_or_syntax_error(text: str) -> None:
    try:
        compile_condition(text)
    except ExpressionSyntaxError as error:
        assert 1 <= error.column <= len(text) + 1


literals = st.sampled_from(["'a'", "'b'", "0", "1", "2.5", "-3", "true", "false", "null", "'X-Id'"])
accessors = st.sampled_from(
    [".a", "?.a", ".b", "?.b", "[0]", "?[0]", "[1]", "?[1]", "['a']", "?['X-Id']", "[index()]"]
)
bases = st.sampled_from(
    [
        "triggerBody()",
        "triggerHeaders()",
        "item()",
        "steps('s').output",
        "steps('s')?.error",
        "steps('gone')?.output",
        "steps('f').error",
        "json(triggerBody()?.a)",
    ]
)
paths = st.builds(lambda base, steps: base + "".join(steps), bases, st.lists(accessors, max_size=4))


def _calls(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    one = st.sampled_from(["length", "not", "string", "int", "float", "bool", "json"])
    two = st.sampled_from(["coalesce", "concat", "contains", "equals", "and", "or", "addSeconds"])
    return (
        st.builds(lambda f, a: f"{f}({a})", one, children)
        | st.builds(lambda f, a, b: f"{f}({a}, {b})", two, children, children)
        | st.builds(lambda a, b, c: f"if({a}, {b}, {c})", children, children, children)
        | st.builds(lambda a: f"triggerBody()?[{a}]", children)
        | st.just("utcNow()")
    )


value_expressions = st.recursive(literals | paths, _calls, max_leaves=6)


def _conditions(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = st.sampled_from(["==", "!=", "<", ">", "<=", ">=", "&&", "||"])
    return st.builds(lambda a, op, b: f"({a} {op} {b})", children, ops, children) | st.builds(
        lambda a: f"!({a})", children
    )


conditions = st.recursive(value_expressions, _conditions, max_leaves=6)


def _context(body: Any, item: Any, headers: dict[str, str], output: Any) -> FakeContext:
    return FakeContext(
        body,
        headers=headers,
        steps={"s": succeeded(output), "f": failed("E", "m")},
        item=item,
        index=1,
    )


contexts = st.builds(
    _context,
    json_values,
    json_values,
    st.dictionaries(st.sampled_from(["X-Id", "x-other"]), st.text(max_size=4), max_size=2),
    json_values,
)


@settings(max_examples=500, deadline=None)
@given(expression=value_expressions, ctx=contexts)
def test_resolve_raises_only_evaluation_errors(expression: str, ctx: FakeContext) -> None:
    compiled = compile_value("@" + expression)
    try:
        compiled.resolve(ctx)
    except ExpressionEvaluationError as error:
        assert error.expression == "@" + expression
        assert str(error)


@settings(max_examples=300, deadline=None)
@given(expression=value_expressions, ctx=contexts)
def test_interpolation_always_yields_a_string(expression: str, ctx: FakeContext) -> None:
    compiled = compile_value("<@{" + expression + "}>")
    try:
        result = compiled.resolve(ctx)
    except ExpressionEvaluationError:
        return
    assert isinstance(result, str)
    assert result.startswith("<")
    assert result.endswith(">")


@settings(max_examples=500, deadline=None)
@given(clause=conditions, ctx=contexts)
def test_condition_evaluation_never_raises(clause: str, ctx: FakeContext) -> None:
    trace = compile_condition(clause).evaluate(ctx)
    assert isinstance(trace.result, bool)
    assert isinstance(trace.resolved, str)
    if trace.error is not None:
        assert trace.result is False


@given(body=json_values)
def test_trigger_body_round_trips(body: Any) -> None:
    assert compile_value("@triggerBody()").resolve(FakeContext(body)) == body


@given(body=json_values.filter(lambda value: not isinstance(value, str)))
def test_json_of_string_of_value_round_trips(body: Any) -> None:
    assert compile_value("@json(string(triggerBody()))").resolve(FakeContext(body)) == body
