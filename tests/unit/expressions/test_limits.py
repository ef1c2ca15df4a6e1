"""Expression size limits and the cost of long navigation chains (issue 16 item 6).

A 350 KB navigation chain took 3.8-8.6 GB to compile: every access kept its own copy of the
chain's text up to itself. Expressions are now bounded in length (and were in depth), and a
chain's error texts are cut from the source only when an error is raised.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from floworch import limits
from floworch.expressions import (
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    compile_condition,
    compile_value,
)

from .fakes import FakeContext


def _chain(accesses: int) -> str:
    return "@triggerBody()" + ".a" * accesses


def _body(depth: int) -> Any:
    body: Any = "leaf"
    for _ in range(depth):
        body = {"a": body}
    return body


def _peak_bytes_compiling(text: str) -> int:
    tracemalloc.start()
    try:
        compiled = compile_value(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert compiled is not None
    return peak


def test_compiling_a_navigation_chain_costs_memory_linear_in_its_length() -> None:
    small = _peak_bytes_compiling(_chain(1_000))
    large = _peak_bytes_compiling(_chain(4_000))
    # Four times the accesses: about four times the memory (it was about sixteen times).
    assert large / small < 7, (small, large)


def test_the_longest_allowed_chain_resolves_and_names_its_failing_access() -> None:
    accesses = (limits.MAX_EXPRESSION_LENGTH - len("@triggerBody()")) // 2 - 1
    compiled = compile_value(_chain(accesses))
    assert compiled.resolve(FakeContext(_body(accesses))) == "leaf"
    with pytest.raises(ExpressionEvaluationError) as caught:
        compiled.resolve(FakeContext(_body(3)))
    message = str(caught.value)
    assert message.startswith("triggerBody().a.a.a.a: cannot read property 'a' of string")


def test_an_index_error_quotes_the_chain_up_to_the_failing_access() -> None:
    with pytest.raises(ExpressionEvaluationError) as caught:
        compile_value("@triggerBody().a[0].b").resolve(FakeContext({"a": [None]}))
    assert (
        str(caught.value)
        == "triggerBody().a[0].b: 'triggerBody().a[0]' is null; use ?. to allow null"
    )


def test_a_whole_value_expression_longer_than_the_limit_is_a_syntax_error() -> None:
    text = _chain(5_000)
    assert len(text) > limits.MAX_EXPRESSION_LENGTH
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_value(text)
    assert caught.value.message == "expression is longer than 8192 characters"
    assert caught.value.column == 2


def test_an_embedded_expression_longer_than_the_limit_is_a_syntax_error() -> None:
    text = "Hello @{triggerBody()" + ".a" * 5_000 + "} and bye"
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_value(text)
    assert caught.value.message == "expression is longer than 8192 characters"
    assert caught.value.column == len("Hello @{") + 1


def test_a_long_text_with_short_embedded_expressions_is_fine() -> None:
    text = ("x" * 9_000 + " @{triggerBody().a} ") * 3
    assert compile_value(text).resolve(FakeContext({"a": 1})).count(" 1 ") == 3


def test_a_when_clause_longer_than_the_limit_is_a_syntax_error() -> None:
    text = " && ".join(["triggerBody().ok == true"] * 400)
    assert len(text) > limits.MAX_EXPRESSION_LENGTH
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_condition(text)
    assert caught.value.message == "expression is longer than 8192 characters"


def test_an_expression_of_exactly_the_limit_compiles() -> None:
    text = "@concat('" + "x" * (limits.MAX_EXPRESSION_LENGTH - len("concat('')")) + "')"
    assert len(text) - 1 == limits.MAX_EXPRESSION_LENGTH
    assert compile_value(text).resolve(FakeContext(None)).startswith("xxx")
    with pytest.raises(ExpressionSyntaxError):
        compile_value(text.replace("x", "xx", 1))


def test_nesting_deeper_than_the_limit_is_a_syntax_error() -> None:
    depth = limits.MAX_EXPRESSION_DEPTH
    compile_value("@" + "string(" * depth + "1" + ")" * depth)
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_value("@" + "string(" * (depth + 1) + "1" + ")" * (depth + 1))
    assert caught.value.message == f"expression is nested too deeply (limit {depth})"
