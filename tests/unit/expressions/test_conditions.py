"""When clauses: operators, strict typing, short-circuit and the WhenTrace."""

from __future__ import annotations

from typing import Any

import pytest

from floworch.expressions import (
    ExpressionSyntaxError,
    StepView,
    WhenTrace,
    compile_condition,
)

from .fakes import FakeContext, succeeded


def trace(text: str, ctx: FakeContext | None = None) -> WhenTrace:
    return compile_condition(text).evaluate(ctx or FakeContext())


def test_step_output_equals_true_with_leading_at() -> None:
    ctx = FakeContext(steps={"approve": succeeded({"approved": True})})
    result = trace("@steps('approve').output.approved == true", ctx)
    assert result == WhenTrace(
        expression="@steps('approve').output.approved == true",
        resolved="true == true",
        result=True,
        error=None,
    )


def test_string_inequality_trace_shows_json() -> None:
    ctx = FakeContext({"tier": "gold"})
    result = trace("triggerBody().tier == 'silver'", ctx)
    assert result.resolved == '"gold" == "silver"'
    assert result.result is False
    assert result.error is None


def test_operands_without_at_and_not() -> None:
    ctx = FakeContext({"skip": False}, steps={"a": succeeded({"n": 5})})
    result = trace("steps('a').output.n > 3 && !triggerBody()?.skip", ctx)
    assert (result.resolved, result.result) == ("5 > 3 && !false", True)


def test_each_operand_may_have_its_own_at() -> None:
    ctx = FakeContext({"n": 2})
    assert trace("@triggerBody().n >= 2 && @triggerBody().n <= 2", ctx).result is True


def test_bare_boolean_expression() -> None:
    assert trace("@triggerBody().ok", FakeContext({"ok": True})).result is True


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("1 == 1.0", True),
        ("1 != 1.0", False),
        ("'a' == 'a'", True),
        ("'1' == 1", False),
        ("true == 1", False),
        ("null == null", True),
        ("null != false", True),
        ("2 > 1.5", True),
        ("2 < 1.5", False),
        ("2 >= 2", True),
        ("2 <= 1", False),
        ("'apple' < 'banana'", True),
        ("true && false", False),
        ("true || false", True),
        ("!false", True),
        ("!!true", True),
        ("true || false && false", True),
        ("(true || false) && false", False),
        ("!(1 > 2) && 3 >= 3", True),
    ],
)
def test_operators(clause: str, expected: bool) -> None:
    result = trace(clause)
    assert result.error is None
    assert result.result is expected


def test_equality_of_objects_is_deep_and_strict() -> None:
    ctx = FakeContext({"a": {"x": [1, True]}, "b": {"x": [1.0, True]}, "c": {"x": [1, 1]}})
    assert trace("triggerBody().a == triggerBody().b", ctx).result is True
    assert trace("triggerBody().a == triggerBody().c", ctx).result is False


def test_ordering_type_mismatch_is_reported_at_operator_column() -> None:
    result = trace("'a' > 3")
    assert result.result is False
    assert result.error == "type mismatch: cannot compare string 'a' with number 3 at column 5"
    assert result.resolved == '"a" > 3'


def test_ordering_null_is_a_type_mismatch() -> None:
    result = trace("triggerBody()?.n < 3", FakeContext({}))
    assert result.error == "type mismatch: cannot compare null with number 3 at column 18"


def test_ordering_booleans_is_a_type_mismatch() -> None:
    assert trace("true > false").error is not None


def test_and_with_non_boolean_is_a_type_error_not_truthiness() -> None:
    result = trace("1 && true")
    assert result.result is False
    assert result.error == "type mismatch: '&&' needs a boolean, got number 1 at column 1"


def test_not_with_null_suggests_coalesce() -> None:
    result = trace("!triggerBody()?.skip", FakeContext({}))
    assert result.error == (
        "type mismatch: '!' needs a boolean, got null; wrap a value that may be null in "
        "coalesce(value, false) at column 2"
    )


def test_or_with_non_boolean_right_operand() -> None:
    assert trace("false || 'x'").error == (
        "type mismatch: '||' needs a boolean, got string 'x' at column 10"
    )


def test_non_boolean_result_is_an_error() -> None:
    result = trace("triggerBody().n", FakeContext({"n": 3}))
    assert result.result is False
    assert result.error == "condition must evaluate to a boolean, got number 3"
    assert result.resolved == "3"


def test_and_short_circuits_and_keeps_unevaluated_source() -> None:
    result = trace("false && steps('never').output.x == 1")
    assert result == WhenTrace(
        "false && steps('never').output.x == 1",
        "false && steps('never').output.x == 1",
        False,
        None,
    )


def test_or_short_circuits() -> None:
    result = trace("triggerBody().ok || triggerBody().missing", FakeContext({"ok": True}))
    assert (result.result, result.error) == (True, None)
    assert result.resolved == "true || triggerBody().missing"


def test_evaluation_error_is_caught_into_trace_with_column() -> None:
    result = trace("1 == 1 && steps('gone').output == 1")
    assert result.result is False
    assert result.error == (
        "steps('gone').output: step 'gone' has not run in this run or does not exist; "
        "use steps('gone')?.output to allow that at column 11"
    )
    assert result.resolved == "1 == 1 && steps('gone').output == 1"


def test_function_calls_in_conditions() -> None:
    ctx = FakeContext({"tags": ["vip"], "name": "Ada"})
    clause = "contains(triggerBody().tags, 'vip') && length(triggerBody().name) == 3"
    result = trace(clause, ctx)
    assert (result.resolved, result.result) == ("true && 3 == 3", True)


def test_parentheses_are_kept_in_resolved() -> None:
    assert trace("!(1 > 2)").resolved == "!(1 > 2)"


def test_resolved_normalises_spacing() -> None:
    assert trace("1==1&&2>1").resolved == "1 == 1 && 2 > 1"


def test_item_in_condition() -> None:
    result = trace("item().qty > 0", FakeContext(item={"qty": 2}))
    assert result.result is True


def test_to_dict() -> None:
    assert trace("'a' == 'a'").to_dict() == {
        "expression": "'a' == 'a'",
        "resolved": '"a" == "a"',
        "result": True,
        "error": None,
    }


def test_step_references_and_uses_item() -> None:
    condition = compile_condition("steps('a').output == steps('b')?.output || item() == 1")
    assert condition.step_references == frozenset({"a", "b"})
    assert condition.uses_item is True
    assert compile_condition("true").uses_item is False


def test_condition_keeps_original_text() -> None:
    assert compile_condition("@true").expression == "@true"


def test_step_status_check() -> None:
    failed_view = StepView(status="Failed", output=None, error={"type": "X", "message": "m"})
    ctx = FakeContext(steps={"pay": failed_view})
    result = trace("steps('pay').status == 'Failed' && steps('pay').error.type == 'X'", ctx)
    assert (result.resolved, result.result) == ('"Failed" == "Failed" && "X" == "X"', True)


@pytest.mark.parametrize(
    ("clause", "column"),
    [
        ("", 1),
        ("@", 2),
        ("1 ==", 5),
        ("1 == 2 == 3", 8),
        ("(true", 6),
        ("true)", 5),
        ("a == 1", 1),
        ("1 = 1", 3),
        ("true & false", 6),
        ("!", 2),
        ("coalesce(1 == 1)", 12),
    ],
)
def test_condition_syntax_errors(clause: str, column: int) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_condition(clause)
    assert info.value.column == column
    assert info.value.expression == clause


def test_chained_comparison_explains_how_to_combine() -> None:
    with pytest.raises(ExpressionSyntaxError, match="comparisons cannot be chained"):
        compile_condition("1 < 2 < 3")


def test_values_deeply_nested_in_condition_render() -> None:
    body: Any = {"x": [1, {"y": "z"}]}
    assert trace("triggerBody() != null", FakeContext(body)).resolved == (
        '{"x":[1,{"y":"z"}]} != null'
    )


def test_not_binds_tighter_than_comparison() -> None:
    # Parsed as (!'a') == 'a', so '!' sees a string; !('a' == 'a') would be plain false.
    assert trace("!'a' == 'a'").error == (
        "type mismatch: '!' needs a boolean, got string 'a' at column 2"
    )


def test_not_may_appear_on_the_right_of_a_comparison() -> None:
    assert trace("false == !true").result is True
