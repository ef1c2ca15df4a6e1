"""Compiling manifest values: whole-value ``@`` expressions, ``@{...}`` interpolation,
and dicts/lists walked recursively."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .context import ExpressionContext
from .errors import ExpressionEvaluationError, ExpressionSyntaxError
from .evaluator import collect_references, compile_node
from .functions import Evaluator
from .json_values import to_text
from .parser import Parser

_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class CompiledValue:
    """A manifest value compiled once and resolved many times.

    Build instances with :func:`compile_value`.
    """

    __slots__ = ("_resolve", "_step_references", "_uses_item", "is_literal")

    def __init__(
        self,
        resolve: Evaluator,
        *,
        step_references: frozenset[str] = frozenset(),
        uses_item: bool = False,
        is_literal: bool = False,
    ) -> None:
        self._resolve = resolve
        self._step_references = step_references
        self._uses_item = uses_item
        self.is_literal = is_literal
        """True when the value contains no expression at all."""

    def resolve(self, ctx: ExpressionContext) -> Any:
        """Evaluate every expression inside the value against ``ctx``.

        Dicts and lists are rebuilt on every call, so callers may mutate the result.

        Raises:
            ExpressionEvaluationError: an expression failed; ``.expression`` holds its text
                and ``.value_path`` where it sits inside the value (``""`` at the top).
        """
        return self._resolve(ctx)

    @property
    def step_references(self) -> frozenset[str]:
        """Step keys read anywhere inside the value via ``steps('key')``."""
        return self._step_references

    @property
    def uses_item(self) -> bool:
        """True when an expression inside the value calls ``item()`` or ``index()``."""
        return self._uses_item


def is_expression(value: object) -> bool:
    """Return True if ``value`` is a string that :func:`compile_value` treats as an expression.

    That is a string starting with ``@`` (but not ``@@``, which escapes a literal ``@``), or
    containing ``@{`` (but not ``@@{``, which escapes a literal ``@{``).
    """
    if not isinstance(value, str):
        return False
    if value.startswith("@") and not value.startswith("@@"):
        return True
    position = 2 if value.startswith("@@") else 0
    while True:
        found = value.find("@{", position)
        if found < 0:
            return False
        if found == 0 or value[found - 1] != "@" or found - 1 < position:
            return True
        position = found + 2


def compile_value(value: Any) -> CompiledValue:
    """Compile a manifest value.

    Strings starting with ``@`` are whole-value expressions (their result keeps its JSON
    type); strings containing ``@{...}`` are interpolated into a string (non-string results
    rendered as compact JSON); dicts and lists are walked recursively; anything else is a
    literal.

    Raises:
        ExpressionSyntaxError: the first syntax error found, in walk order.
    """
    errors: list[tuple[str, ExpressionSyntaxError]] = []
    compiled = _compile(value, "", errors, stop_at_first=True)
    if errors:
        raise errors[0][1]
    return compiled


def compile_value_errors(value: Any) -> list[tuple[str, ExpressionSyntaxError]]:
    """Return every syntax error inside ``value`` with its path, e.g. ``"order.items[2]"``.

    The path of a top-level string is ``""``. Keys that are not identifiers are written as
    ``['key']``. Each string reports at most its first error.
    """
    errors: list[tuple[str, ExpressionSyntaxError]] = []
    _compile(value, "", errors, stop_at_first=False)
    return errors


def _child_path(parent: str, key: Any) -> str:
    text = str(key)
    if text and text[0] not in "0123456789" and all(ch in _IDENTIFIER_CHARS for ch in text):
        return f"{parent}.{text}" if parent else text
    return parent + "['" + text.replace("'", "''") + "']"


def _compile(
    value: Any, path: str, errors: list[tuple[str, ExpressionSyntaxError]], *, stop_at_first: bool
) -> CompiledValue:
    if isinstance(value, str):
        try:
            return _compile_string(value, path)
        except ExpressionSyntaxError as exc:
            errors.append((path, exc))
            return CompiledValue(lambda ctx: value, is_literal=True)
    if isinstance(value, Mapping):
        entries: list[tuple[Any, CompiledValue]] = []
        for key, item in value.items():
            entries.append(
                (key, _compile(item, _child_path(path, key), errors, stop_at_first=stop_at_first))
            )
            if errors and stop_at_first:
                break
        return _combine_dict(entries)
    if isinstance(value, list | tuple):
        items: list[CompiledValue] = []
        for position, item in enumerate(value):
            items.append(_compile(item, f"{path}[{position}]", errors, stop_at_first=stop_at_first))
            if errors and stop_at_first:
                break
        return _combine_list(items)
    return CompiledValue(lambda ctx: value, is_literal=True)


def _merge(parts: list[CompiledValue]) -> dict[str, Any]:
    steps: frozenset[str] = frozenset().union(*(p.step_references for p in parts))
    return {
        "step_references": steps,
        "uses_item": any(p.uses_item for p in parts),
        "is_literal": all(p.is_literal for p in parts),
    }


def _combine_dict(entries: list[tuple[Any, CompiledValue]]) -> CompiledValue:
    resolvers = tuple((key, part._resolve) for key, part in entries)

    def resolve(ctx: ExpressionContext) -> dict[Any, Any]:
        return {key: part(ctx) for key, part in resolvers}

    return CompiledValue(resolve, **_merge([part for _, part in entries]))


def _combine_list(items: list[CompiledValue]) -> CompiledValue:
    resolvers = tuple(part._resolve for part in items)

    def resolve(ctx: ExpressionContext) -> list[Any]:
        return [part(ctx) for part in resolvers]

    return CompiledValue(resolve, **_merge(items))


def _compile_string(text: str, path: str) -> CompiledValue:
    if "@" not in text:
        return CompiledValue(lambda ctx: text, is_literal=True)
    if text.startswith("@") and not text.startswith("@@") and not text.startswith("@{"):
        node = Parser(text, 1).parse_value_to_end()
        steps, uses_item = collect_references(node)
        return CompiledValue(
            _guard(compile_node(node, text), text, path), step_references=steps, uses_item=uses_item
        )
    segments: list[str | Evaluator] = []
    steps_seen: set[str] = set()
    any_item = False
    literal: list[str] = []
    position = 0
    if text.startswith("@@"):
        literal.append("@")
        position = 2
    while True:
        found = text.find("@{", position)
        if found < 0:
            literal.append(text[position:])
            break
        if found > position and text[found - 1] == "@":
            literal.append(text[position : found - 1] + "@{")
            position = found + 2
            continue
        literal.append(text[position:found])
        node, position = Parser(text, found + 2).parse_embedded()
        if literal:
            segments.append("".join(literal))
            literal = []
        segments.append(compile_node(node, text))
        node_steps, node_item = collect_references(node)
        steps_seen |= node_steps
        any_item = any_item or node_item
    tail = "".join(literal)
    if tail:
        segments.append(tail)
    if not any(callable(segment) for segment in segments):
        unescaped = "".join(s for s in segments if isinstance(s, str))
        return CompiledValue(lambda ctx: unescaped, is_literal=True)
    return CompiledValue(
        _guard(_interpolate(tuple(segments)), text, path),
        step_references=frozenset(steps_seen),
        uses_item=any_item,
    )


def _interpolate(segments: tuple[str | Evaluator, ...]) -> Evaluator:
    def resolve(ctx: ExpressionContext) -> str:
        return "".join(
            segment if isinstance(segment, str) else to_text(segment(ctx)) for segment in segments
        )

    return resolve


def _guard(resolve: Evaluator, text: str, path: str) -> Callable[[ExpressionContext], Any]:
    """Attach the expression text and value path to evaluation errors."""

    def guarded(ctx: ExpressionContext) -> Any:
        try:
            return resolve(ctx)
        except ExpressionEvaluationError as exc:
            if not exc.expression:
                exc.expression = text
            if exc.value_path is None:
                exc.value_path = path
            raise
        except RecursionError:
            raise ExpressionEvaluationError(
                "value is nested too deeply", expression=text, value_path=path
            ) from None

    return guarded
