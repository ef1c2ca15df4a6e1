"""The Bicep functions the offline evaluator implements: the subset the templates use."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from tests.unit.infra.bicep_values import Unknown, is_unknown, normalise, to_string

if TYPE_CHECKING:
    from tests.unit.infra.bicep_eval import FileEvaluator


Builtin = Callable[["FileEvaluator", list[Any]], Any]


def _pure(function: Callable[..., Any]) -> Builtin:
    def call(evaluator: FileEvaluator, args: list[Any]) -> Any:
        if any(is_unknown(a) for a in args):
            return Unknown("f(?)")
        try:
            return function(*args)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise evaluator.fail(f"{function.__name__}: {exc}") from None

    call.__name__ = function.__name__
    return call


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return str(item).lower() in container.lower()
    return item in container


def _items(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": obj[k]} for k in sorted(obj, key=str.lower)]


def _union(*values: Any) -> Any:
    if all(isinstance(v, list) for v in values):
        merged: list[Any] = []
        for value in values:
            merged.extend(x for x in value if x not in merged)
        return merged
    out: dict[str, Any] = {}
    for value in values:
        out.update(value)
    return out


def _map(evaluator: FileEvaluator, args: list[Any]) -> Any:
    items, function = args
    if is_unknown(items):
        return Unknown("map(?)")
    return [evaluator.apply(function, item, i) for i, item in enumerate(items)]


def _filter(evaluator: FileEvaluator, args: list[Any]) -> Any:
    items, function = args
    if is_unknown(items):
        return Unknown("filter(?)")
    kept = []
    for i, item in enumerate(items):
        keep = evaluator.apply(function, item, i)
        if is_unknown(keep):
            return Unknown("filter(?)")
        if evaluator.truth(keep):
            kept.append(item)
    return kept


def _to_object(evaluator: FileEvaluator, args: list[Any]) -> Any:
    items, key_of = args[0], args[1]
    value_of = args[2] if len(args) > 2 else None
    if is_unknown(items):
        return Unknown("toObject(?)")
    return {
        evaluator.apply(key_of, item): item if value_of is None else evaluator.apply(value_of, item)
        for item in items
    }


def _load_json_content(evaluator: FileEvaluator, args: list[Any]) -> Any:
    path = normalise(str(PurePosixPath(evaluator.path).parent / args[0]))
    try:
        return json.loads(evaluator.sources.text(path))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise evaluator.fail(f"loadJsonContent({args[0]!r}): {exc}") from None


def _subscription_resource_id(evaluator: FileEvaluator, args: list[Any]) -> Any:
    if any(is_unknown(a) for a in args):
        return Unknown("subscriptionResourceId(?)")
    resource_type, *names = args
    return f"/subscriptions/{{subscriptionId}}/providers/{resource_type}/{'/'.join(names)}"


def _guid(evaluator: FileEvaluator, args: list[Any]) -> Any:
    if any(is_unknown(a) for a in args):
        return Unknown("guid(?)")
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(map(to_string, args))))


def _flatten(arrays: list[list[Any]]) -> list[Any]:
    return [x for array in arrays for x in array]


def _range(start: int, count: int) -> list[int]:
    return list(range(start, start + count))


def _empty(value: Any) -> bool:
    return value is None or len(value) == 0


def _starts_with(text: str, prefix: str) -> bool:
    return text.lower().startswith(prefix.lower())


def _take(value: Any, count: int) -> Any:
    return value[:count]


BUILTINS: dict[str, Builtin] = {
    "map": _map,
    "filter": _filter,
    "toObject": _to_object,
    "loadJsonContent": _load_json_content,
    "subscriptionResourceId": _subscription_resource_id,
    "guid": _guid,
    "items": _pure(_items),
    "flatten": _pure(_flatten),
    "range": _pure(_range),
    "length": _pure(len),
    "empty": _pure(_empty),
    "contains": _pure(_contains),
    "startsWith": _pure(_starts_with),
    "string": _pure(to_string),
    "toLower": _pure(str.lower),
    "take": _pure(_take),
    "union": _pure(_union),
    "json": _pure(json.loads),
    "replace": _pure(str.replace),
    "split": _pure(str.split),
}

OPAQUE = frozenset(
    {"resourceGroup", "subscription", "tenant", "environment", "uniqueString", "deployment"}
)
"""Functions whose value only ARM knows."""
