"""Translation of pydantic errors into located manifest issues, in the manifest's own names."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from floworch import limits
from floworch.errors import ValidationIssue
from floworch.model.manifest import FlowManifest, PollPolicy, RetryPolicy, RunAfterSpec, StepSpec
from floworch.model.triggers import TRIGGER_MODELS, CronTrigger

_JSON_TAGS = frozenset({"dict", "list", "str", "int", "float", "bool", "none"})
_JSON_FIELDS = frozenset({"inputs", "forEach", "body", "conditionEquals"})


def format_path(parts: Iterable[object]) -> str:
    """Join path segments: keys with '.', list indexes as ``[i]``."""
    text = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            name = str(part)
            name = name if name.isprintable() else repr(name)  # a newline would split the line
            text += f".{name}" if text else name
    return text


def pydantic_issues(exc: ValidationError) -> list[ValidationIssue]:
    """Translate pydantic errors into issues in the manifest's own (camelCase) names."""
    issues = []
    for error in exc.errors(include_url=False):
        loc, model = _clean_location(tuple(error["loc"]))
        kind = error["type"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "type")
        message = _message(kind, error, loc, model)
        issues.append(ValidationIssue(format_path(loc), message))
    return issues


def _clean_location(
    raw: tuple[int | str, ...],
) -> tuple[tuple[int | str, ...], type[BaseModel] | None]:
    """Drop pydantic's union tags from a location; return it and the model owning its last part."""
    loc: list[int | str] = []
    model: type[BaseModel] | None = FlowManifest
    parent: type[BaseModel] | None = None
    index = 0
    while index < len(raw):
        part = raw[index]
        index += 1
        if part == "[key]":
            if loc:
                loc[-1] = str(loc[-1])  # a mapping key, not a list index
            continue
        loc.append(part)
        parent = model
        if model is FlowManifest and part == "triggers" and index < len(raw):
            loc.append(raw[index])
            tag = raw[index + 1] if index + 1 < len(raw) else None
            model = TRIGGER_MODELS.get(str(tag)) if tag is not None else None
            index += 2 if model is not None else 1
        elif part in ("steps", "runAfter") and model in (FlowManifest, StepSpec):
            if index < len(raw):
                loc.append(raw[index])
                index += 1
            model = StepSpec if part == "steps" else RunAfterSpec
        elif part in _JSON_FIELDS and model in (StepSpec, CronTrigger, PollPolicy):
            # JSON values: pydantic puts a type tag ('dict', 'list') before each key or index.
            while index < len(raw):
                if raw[index] in _JSON_TAGS and index + 1 < len(raw):
                    index += 1
                loc.append(raw[index])
                index += 1
            model = None
        elif part == "retry" and model is StepSpec:
            model = RetryPolicy
        elif part == "poll" and model is StepSpec:
            model = PollPolicy
        else:
            model = None
    return tuple(loc), parent


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def did_you_mean(word: object, candidates: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    matches = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


_TYPE_NOUNS = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
    "int_from_float": "an integer",
}


def json_type_name(value: object) -> str:
    """Name a value's JSON type (for 'got ...' in messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _message(
    kind: str, error: Any, loc: tuple[int | str, ...], model: type[BaseModel] | None
) -> str:
    ctx = error.get("ctx") or {}
    value = error.get("input")
    field = loc[-1] if loc else ""
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}{did_you_mean(field, _field_names(model))}"
    if kind == "union_tag_invalid":
        expected = ctx.get("expected_tags", "")
        hint = did_you_mean(ctx.get("tag"), TRIGGER_MODELS)
        return f"unknown trigger type {ctx.get('tag')!r}{hint}; expected one of {expected}"
    if kind == "union_tag_not_found":
        return "required field is missing (one of " + ", ".join(TRIGGER_MODELS) + ")"
    if kind in _TYPE_NOUNS:
        return f"must be {_TYPE_NOUNS[kind]} (got {json_type_name(value)})"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}
    if kind in bounds or kind == "less_than_equal":
        limit = next(iter(ctx.values()), "?")
        unit = ""
        if kind == "less_than_equal" and limit == limits.MAX_DURATION_SECONDS:
            limit, unit = limits.MAX_DURATION_SECONDS, f" seconds ({limits.MAX_DURATION.days} days)"
        limit = f"{limit:g}" if isinstance(limit, float) else limit
        operator = bounds.get(kind, "<=")
        return f"must be {operator} {limit}{unit} (got {value!r})"
    if kind == "literal_error":
        hint = did_you_mean(value, re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return f"must be one of {ctx.get('expected')} (got {value!r}){hint}"
    if kind == "string_pattern_mismatch":
        return (
            f"{value!r} must start with a letter or digit and contain only letters, digits, "
            "'-', '_' and '.'"
        )
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("recursion_loop", "invalid-json-value"):
        return "must be a JSON value" if kind != "recursion_loop" else "contains itself"
    text = str(error["msg"])
    return text[:1].lower() + text[1:]
