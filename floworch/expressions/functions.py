"""The built-in functions: their arity (checked at compile time) and implementations."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .context import CaseInsensitiveHeaders, ExpressionContext
from .errors import ExpressionEvaluationError
from .json_values import describe, is_number, json_equal, to_text

Evaluator = Callable[[ExpressionContext], Any]
EagerImpl = Callable[[ExpressionContext, list[Any]], Any]
LazyImpl = Callable[[ExpressionContext, Sequence[Evaluator]], Any]

_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")
_FLOAT_TEXT = re.compile(r"\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A built-in function.

    Attributes:
        name: The name as written in expressions (case-sensitive).
        signature: How the function is called, for error messages.
        min_args: Fewest arguments accepted.
        max_args: Most arguments accepted; ``None`` for any number.
        eager: Implementation receiving evaluated arguments, or
        lazy: implementation receiving argument evaluators (for ``if``, ``and``, ``or``,
            ``coalesce``, which evaluate only what they need).
    """

    name: str
    signature: str
    min_args: int
    max_args: int | None
    eager: EagerImpl | None = None
    lazy: LazyImpl | None = None


def _fail(name: str, message: str) -> ExpressionEvaluationError:
    return ExpressionEvaluationError(f"{name}(): {message}")


def _need_bool(name: str, value: Any, position: int) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, f"argument {position} must be a boolean, got {describe(value)}")
    return value


def _trigger_body(ctx: ExpressionContext, args: list[Any]) -> Any:
    return ctx.trigger_body()


def _trigger_headers(ctx: ExpressionContext, args: list[Any]) -> Any:
    headers = ctx.trigger_headers()
    if isinstance(headers, dict):
        return CaseInsensitiveHeaders(headers)
    return headers


def _item(ctx: ExpressionContext, args: list[Any]) -> Any:
    return ctx.item()


def _index(ctx: ExpressionContext, args: list[Any]) -> Any:
    return ctx.index()


def _coalesce(ctx: ExpressionContext, args: Sequence[Evaluator]) -> Any:
    for arg in args:
        value = arg(ctx)
        if value is not None:
            return value
    return None


def _and(ctx: ExpressionContext, args: Sequence[Evaluator]) -> bool:
    return all(_need_bool("and", arg(ctx), position) for position, arg in enumerate(args, 1))


def _or(ctx: ExpressionContext, args: Sequence[Evaluator]) -> bool:
    return any(_need_bool("or", arg(ctx), position) for position, arg in enumerate(args, 1))


def _if(ctx: ExpressionContext, args: Sequence[Evaluator]) -> Any:
    condition, then, otherwise = args
    return then(ctx) if _need_bool("if", condition(ctx), 1) else otherwise(ctx)


def _not(ctx: ExpressionContext, args: list[Any]) -> bool:
    return not _need_bool("not", args[0], 1)


def _equals(ctx: ExpressionContext, args: list[Any]) -> bool:
    return json_equal(args[0], args[1])


def _concat(ctx: ExpressionContext, args: list[Any]) -> Any:
    if all(isinstance(arg, list | tuple) for arg in args):
        return [item for arg in args for item in arg]
    return "".join(to_text(arg) for arg in args)


def _length(ctx: ExpressionContext, args: list[Any]) -> int:
    value = args[0]
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise _fail("length", f"expects a string, array or object, got {describe(value)}")


def _contains(ctx: ExpressionContext, args: list[Any]) -> bool:
    collection, value = args
    if isinstance(collection, list | tuple):
        return any(json_equal(item, value) for item in collection)
    if isinstance(collection, str | Mapping):
        if not isinstance(value, str):
            kind = "a string" if isinstance(collection, str) else "an object"
            raise _fail("contains", f"looking in {kind} needs a string, got {describe(value)}")
        return value in collection
    raise _fail("contains", f"expects a string, array or object, got {describe(collection)}")


def _string(ctx: ExpressionContext, args: list[Any]) -> str:
    return to_text(args[0])


def _int(ctx: ExpressionContext, args: list[Any]) -> int:
    value = args[0]
    if isinstance(value, bool):
        raise _fail("int", f"cannot convert {describe(value)} to an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise _fail("int", f"{describe(value)} is not a whole number")
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        try:
            return int(value)
        except ValueError:
            raise _fail("int", "the number is too long") from None
    raise _fail("int", f"cannot convert {describe(value)} to an integer")


def _float(ctx: ExpressionContext, args: list[Any]) -> float:
    value = args[0]
    if is_number(value):
        try:
            return float(value)
        except OverflowError:
            raise _fail("float", "the number is too large for a float") from None
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value):
        result = float(value)
        if math.isfinite(result):
            return result
        raise _fail("float", f"{describe(value)} is out of range")
    raise _fail("float", f"cannot convert {describe(value)} to a float")


def _bool(ctx: ExpressionContext, args: list[Any]) -> bool:
    value = args[0]
    if isinstance(value, bool):
        return value
    if is_number(value):
        return bool(value != 0)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail("bool", f"cannot convert {describe(value)} to a boolean")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json(ctx: ExpressionContext, args: list[Any]) -> Any:
    value = args[0]
    if not isinstance(value, str):
        raise _fail("json", f"expects a string of JSON text, got {describe(value)}")
    try:
        return json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _fail("json", f"invalid JSON: {exc}") from None


def format_timestamp(moment: datetime) -> str:
    """Format ``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(timespec="microseconds") + "Z"


def _utc_now(ctx: ExpressionContext, args: list[Any]) -> str:
    return format_timestamp(ctx.now())


def _add_seconds(ctx: ExpressionContext, args: list[Any]) -> str:
    timestamp, seconds = args
    if not isinstance(timestamp, str):
        raise _fail(
            "addSeconds", f"argument 1 must be a timestamp string, got {describe(timestamp)}"
        )
    if not is_number(seconds):
        raise _fail("addSeconds", f"argument 2 must be a number, got {describe(seconds)}")
    try:
        moment = datetime.fromisoformat(timestamp.strip())
    except ValueError:
        raise _fail("addSeconds", f"{describe(timestamp)} is not an ISO-8601 timestamp") from None
    try:
        return format_timestamp(moment + timedelta(seconds=seconds))
    except (OverflowError, ValueError):
        raise _fail("addSeconds", "the result is outside the supported date range") from None


_SPECS = (
    FunctionSpec("triggerBody", "triggerBody()", 0, 0, eager=_trigger_body),
    FunctionSpec("triggerHeaders", "triggerHeaders()", 0, 0, eager=_trigger_headers),
    FunctionSpec("item", "item()", 0, 0, eager=_item),
    FunctionSpec("index", "index()", 0, 0, eager=_index),
    FunctionSpec("coalesce", "coalesce(value, ...)", 1, None, lazy=_coalesce),
    FunctionSpec("concat", "concat(value, ...)", 1, None, eager=_concat),
    FunctionSpec("length", "length(collection)", 1, 1, eager=_length),
    FunctionSpec("contains", "contains(collection, value)", 2, 2, eager=_contains),
    FunctionSpec("equals", "equals(a, b)", 2, 2, eager=_equals),
    FunctionSpec("not", "not(boolean)", 1, 1, eager=_not),
    FunctionSpec("and", "and(boolean, boolean, ...)", 2, None, lazy=_and),
    FunctionSpec("or", "or(boolean, boolean, ...)", 2, None, lazy=_or),
    FunctionSpec("if", "if(condition, then, else)", 3, 3, lazy=_if),
    FunctionSpec("string", "string(value)", 1, 1, eager=_string),
    FunctionSpec("int", "int(value)", 1, 1, eager=_int),
    FunctionSpec("float", "float(value)", 1, 1, eager=_float),
    FunctionSpec("bool", "bool(value)", 1, 1, eager=_bool),
    FunctionSpec("json", "json(text)", 1, 1, eager=_json),
    FunctionSpec("utcNow", "utcNow()", 0, 0, eager=_utc_now),
    FunctionSpec("addSeconds", "addSeconds(timestamp, seconds)", 2, 2, eager=_add_seconds),
)

FUNCTIONS: Mapping[str, FunctionSpec] = {spec.name: spec for spec in _SPECS}
"""Built-in functions by name; ``steps('key')`` is handled by the parser and not listed here."""

KNOWN_FUNCTIONS: tuple[str, ...] = tuple(sorted([*FUNCTIONS, "steps"], key=str.lower))
"""Every function name an expression may call, for error messages and documentation."""
