"""Helpers for JSON values: type names, strict equality, rendering for messages and text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .context import StepView
from .errors import ExpressionEvaluationError

_MAX_DESCRIBE = 60
_encode_string = json.JSONEncoder(ensure_ascii=False).encode


def type_name(value: Any) -> str:
    """Return the JSON type name of ``value``: string, number, boolean, null, object, array."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping | StepView):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def is_number(value: Any) -> bool:
    """Return True for ints and floats, but not for booleans."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def render_json(value: Any) -> str:
    """Render ``value`` as compact JSON (non-JSON leaves fall back to ``str``).

    Raises:
        ExpressionEvaluationError: the value cannot be rendered (e.g. nested too deeply).
    """
    # Scalars skip json.dumps: this runs for every operand of every evaluated When clause.
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return _encode_string(value)
    try:
        return json.dumps(
            _plain(value), ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=True
        )
    except (ValueError, TypeError, RecursionError) as exc:
        raise ExpressionEvaluationError(f"value cannot be rendered as JSON: {exc}") from None


def to_text(value: Any) -> str:
    """Render a value inside text: strings as-is, anything else as JSON."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    return render_json(value)


def describe(value: Any) -> str:
    """Describe a value for an error message, e.g. ``string 'a'`` or ``number 3``."""
    if isinstance(value, str):
        text = "'" + value.replace("'", "''") + "'"
    else:
        try:
            text = render_json(value)
        except ExpressionEvaluationError:
            text = "..."
    if len(text) > _MAX_DESCRIBE:
        text = text[: _MAX_DESCRIBE - 3] + "..."
    name = type_name(value)
    return name if value is None else f"{name} {text}"


def json_equal(left: Any, right: Any) -> bool:
    """Strict JSON equality: different types are never equal; ints and floats compare by value.

    ``true`` is not equal to ``1``; objects and arrays compare element by element.
    """
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if is_number(left) and is_number(right):
        return bool(left == right)
    if isinstance(left, StepView):
        left = left.to_dict()
    if isinstance(right, StepView):
        right = right.to_dict()
    if isinstance(left, Mapping):
        if not isinstance(right, Mapping) or len(left) != len(right):
            return False
        for key, item in left.items():
            if key not in right or not json_equal(item, right[key]):
                return False
        return True
    if isinstance(left, list | tuple):
        if not isinstance(right, list | tuple) or len(left) != len(right):
            return False
        return all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if type_name(left) != type_name(right):
        return False
    return bool(left == right)


def _plain(value: Any) -> Any:
    if isinstance(value, StepView):
        return value.to_dict()
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return dict(value)
    return value
