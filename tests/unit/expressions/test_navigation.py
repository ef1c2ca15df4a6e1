"""Accessors and navigation: triggerBody/Headers, steps(), '.', '[]', '?.', '?['."""

from __future__ import annotations

from typing import Any

import pytest

from floworch.expressions import ExpressionEvaluationError, compile_value

from .fakes import FakeContext, failed, succeeded


def resolve(text: str, ctx: FakeContext) -> Any:
    return compile_value(text).resolve(ctx)


def error_of(text: str, ctx: FakeContext) -> str:
    with pytest.raises(ExpressionEvaluationError) as info:
        resolve(text, ctx)
    return str(info.value)


def test_optional_member_then_index() -> None:
    assert resolve("@triggerBody()?.a.b[0]", FakeContext({"a": {"b": ["x", "y"]}})) == "x"


def test_optional_member_on_null_body_is_null() -> None:
    assert resolve("@triggerBody()?.a", FakeContext(None)) is None


def test_optional_member_on_missing_key_is_null() -> None:
    assert resolve("@triggerBody()?.a", FakeContext({})) is None


def test_optional_index_on_missing_key_is_null() -> None:
    assert resolve("@triggerBody()?['a']", FakeContext({})) is None


def test_optional_index_past_end_is_null() -> None:
    assert resolve("@triggerBody().items?[5]", FakeContext({"items": [1]})) is None


def test_optional_applies_to_one_step_only() -> None:
    message = error_of("@triggerBody()?.a.b", FakeContext({}))
    assert message == "triggerBody()?.a.b: 'a' is null; use ?. to allow null"


def test_member_on_null_names_the_path() -> None:
    message = error_of("@triggerBody().order.id", FakeContext({"order": None}))
    assert message == "triggerBody().order.id: 'order' is null; use ?. to allow null"


def test_member_on_null_body_names_the_call() -> None:
    message = error_of("@triggerBody().order", FakeContext(None))
    assert message == "triggerBody().order: 'triggerBody()' is null; use ?. to allow null"


def test_missing_member_lists_available_keys() -> None:
    message = error_of("@triggerBody().nme", FakeContext({"name": "x", "age": 3}))
    assert message == (
        "triggerBody().nme: property 'nme' is missing (it has name, age); "
        "use ?. to allow a missing property"
    )


def test_missing_member_on_empty_object() -> None:
    assert "the object is empty" in error_of("@triggerBody().x", FakeContext({}))


def test_index_on_null_suggests_optional_bracket() -> None:
    message = error_of("@triggerBody().items[0]", FakeContext({"items": None}))
    assert message == "triggerBody().items[0]: 'items' is null; use ?[ to allow null"


def test_index_out_of_range() -> None:
    message = error_of("@triggerBody()[2]", FakeContext([1, 2]))
    assert message == (
        "triggerBody()[2]: index 2 is out of range for an array of 2 items; use ?[ to allow that"
    )


def test_negative_index_is_rejected() -> None:
    assert "negative index -1" in error_of("@triggerBody()[-1]", FakeContext([1]))


def test_string_index_reads_property() -> None:
    assert resolve("@triggerBody()['X-Id']", FakeContext({"X-Id": 5})) == 5


def test_member_on_string_is_a_type_error() -> None:
    message = error_of("@triggerBody().a.b", FakeContext({"a": "text"}))
    assert message == "triggerBody().a.b: cannot read property 'b' of string 'text'"


def test_optional_member_on_non_object_is_still_a_type_error() -> None:
    assert "cannot read property" in error_of("@triggerBody()?.b", FakeContext(3))


def test_number_index_on_object_is_a_type_error() -> None:
    assert "cannot index object" in error_of("@triggerBody()[0]", FakeContext({"0": 1}))


def test_boolean_index_is_rejected() -> None:
    message = error_of("@triggerBody()[true]", FakeContext([1, 2]))
    assert "index must be a string or a whole number, got boolean true" in message


def test_dynamic_index_uses_an_expression() -> None:
    ctx = FakeContext({"rates": {"gold": 3}, "tier": "gold"})
    assert resolve("@triggerBody().rates[triggerBody().tier]", ctx) == 3


def test_index_with_foreach_index() -> None:
    ctx = FakeContext({"names": ["a", "b", "c"]}, item=None, index=2)
    assert resolve("@triggerBody().names[index()]", ctx) == "c"


def test_long_chain() -> None:
    body: dict[str, Any] = {"v": 1}
    for _ in range(300):
        body = {"n": body}
    assert resolve("@triggerBody()" + ".n" * 300 + ".v", FakeContext(body)) == 1


# -- headers -----------------------------------------------------------------------------


def test_header_lookup_is_case_insensitive() -> None:
    ctx = FakeContext(headers={"X-Id": "abc"})
    assert resolve("@triggerHeaders()['x-id']", ctx) == "abc"


def test_plain_dict_headers_are_made_case_insensitive() -> None:
    class DictHeaders(FakeContext):
        def trigger_headers(self) -> dict[str, str]:
            return {"Content-Type": "text/plain"}

    assert resolve("@triggerHeaders()['content-type']", DictHeaders()) == "text/plain"


def test_missing_header_is_an_error_without_optional() -> None:
    message = error_of("@triggerHeaders()['X-Missing']", FakeContext(headers={"A": "1"}))
    assert "property 'X-Missing' is missing (it has A)" in message


def test_missing_header_with_optional_is_null() -> None:
    assert resolve("@triggerHeaders()?['X-Missing']", FakeContext()) is None


# -- steps -------------------------------------------------------------------------------


def test_step_output() -> None:
    ctx = FakeContext(steps={"fetch": succeeded({"orders": [1, 2]})})
    assert resolve("@steps('fetch').output.orders", ctx) == [1, 2]


def test_step_status() -> None:
    assert resolve("@steps('k').status", FakeContext(steps={"k": succeeded(1)})) == "Succeeded"


def test_step_error() -> None:
    ctx = FakeContext(steps={"k": failed("ValueError", "boom")})
    assert resolve("@steps('k').error", ctx) == {"type": "ValueError", "message": "boom"}


def test_step_field_by_bracket() -> None:
    assert resolve("@steps('k')['output']", FakeContext(steps={"k": succeeded(9)})) == 9


def test_bare_step_is_an_object() -> None:
    ctx = FakeContext(steps={"k": succeeded(9)})
    assert resolve("@steps('k')", ctx) == {"status": "Succeeded", "output": 9, "error": None}


def test_missing_step_is_an_error() -> None:
    message = error_of("@steps('nope').output", FakeContext())
    assert message == (
        "steps('nope').output: step 'nope' has not run in this run or does not exist; "
        "use steps('nope')?.output to allow that"
    )


def test_bare_missing_step_is_an_error() -> None:
    assert "step 'nope' has not run" in error_of("@steps('nope')", FakeContext())


def test_missing_step_with_optional_is_null() -> None:
    assert resolve("@steps('nope')?.output", FakeContext()) is None


def test_step_key_with_quote() -> None:
    assert resolve("@steps('it''s').output", FakeContext(steps={"it's": succeeded(1)})) == 1
