"""When clauses: boolean conditions over expressions, evaluated into a :class:`WhenTrace`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .context import ExpressionContext
from .errors import ExpressionEvaluationError
from .evaluator import collect_references, compile_node
from .json_values import describe, is_number, json_equal, render_json
from .nodes import BoolOp, Compare, Group, Literal, Node, Not
from .parser import Parser

# Values of the operands evaluated so far, keyed by operand start offset.
Seen = dict[int, Any]
CondEvaluator = Callable[[ExpressionContext, Seen], Any]


@dataclass(frozen=True, slots=True)
class WhenTrace:
    """The outcome of evaluating a When clause, for run history and debugging.

    Attributes:
        expression: The clause as written.
        resolved: The clause with each operand replaced by the JSON of its value, e.g.
            ``'"gold" == "silver"'``. Operands that were not evaluated (short-circuit or an
            earlier error) keep their source text.
        result: The boolean outcome; False whenever ``error`` is set.
        error: Why the clause could not be evaluated, or None.
    """

    expression: str
    resolved: str
    result: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the trace as a JSON-ready dict."""
        return {
            "expression": self.expression,
            "resolved": self.resolved,
            "result": self.result,
            "error": self.error,
        }


class _ConditionFailure(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CompiledCondition:
    """A When clause compiled once; build instances with :func:`compile_condition`.

    Attributes:
        expression: The clause as written.
        step_references: Step keys read via ``steps('key')``.
        uses_item: True when the clause calls ``item()`` or ``index()``.
    """

    __slots__ = ("_evaluate", "_tree", "expression", "step_references", "uses_item")

    def __init__(self, text: str, tree: Node) -> None:
        self.expression = text
        self._tree = tree
        self._evaluate = _compile(tree, text)
        self.step_references, self.uses_item = collect_references(tree)

    def evaluate(self, ctx: ExpressionContext) -> WhenTrace:
        """Evaluate the clause; never raises for problems in the clause itself.

        Evaluation errors (missing step, type mismatch, non-boolean result) are reported in
        ``WhenTrace.error`` with ``result`` False.
        """
        seen: Seen = {}
        error: str | None = None
        result = False
        try:
            value = self._evaluate(ctx, seen)
            if isinstance(value, bool):
                result = value
            else:
                error = f"condition must evaluate to a boolean, got {describe(value)}"
        except _ConditionFailure as failure:
            error = failure.message
        except RecursionError:
            error = "condition is nested too deeply to evaluate"
        return WhenTrace(self.expression, _render(self._tree, self.expression, seen), result, error)


def compile_condition(text: str) -> CompiledCondition:
    """Compile a When clause such as ``@steps('approve').output.approved == true``.

    The leading ``@`` is optional, on the clause and on each operand.

    Raises:
        ExpressionSyntaxError: the clause is not valid.
    """
    return CompiledCondition(text, Parser(text).parse_condition())


def _need_bool(value: Any, what: str, column: int) -> bool:
    if isinstance(value, bool):
        return value
    hint = "; wrap a value that may be null in coalesce(value, false)" if value is None else ""
    raise _ConditionFailure(
        f"type mismatch: {what} needs a boolean, got {describe(value)}{hint} at column {column}"
    )


def _compile(node: Node, source: str) -> CondEvaluator:
    if isinstance(node, Group):
        return _compile(node.inner, source)
    if isinstance(node, Not):
        inner = _compile(node.operand, source)
        column = node.operand.start + 1
        return lambda ctx, seen: not _need_bool(inner(ctx, seen), "'!'", column)
    if isinstance(node, BoolOp):
        return _compile_bool(node, source)
    if isinstance(node, Compare):
        return _compile_compare(node, source)
    return _compile_operand(node, source)


def _compile_operand(node: Node, source: str) -> CondEvaluator:
    evaluate = compile_node(node, source)
    start = node.start

    def operand(ctx: ExpressionContext, seen: Seen) -> Any:
        try:
            value = evaluate(ctx)
        except ExpressionEvaluationError as exc:
            raise _ConditionFailure(f"{exc.message} at column {start + 1}") from None
        seen[start] = value
        return value

    return operand


def _compile_bool(node: BoolOp, source: str) -> CondEvaluator:
    operands = tuple((_compile(op, source), op.start + 1) for op in node.operands)
    what = f"'{node.op}'"
    stop_on = node.op == "||"

    def run(ctx: ExpressionContext, seen: Seen) -> bool:
        for evaluate, column in operands:
            if _need_bool(evaluate(ctx, seen), what, column) is stop_on:
                return stop_on
        return not stop_on

    return run


def _compile_compare(node: Compare, source: str) -> CondEvaluator:
    left = _compile(node.left, source)
    right = _compile(node.right, source)
    op = node.op
    column = node.op_start + 1
    if op in ("==", "!="):
        negate = op == "!="
        return lambda ctx, seen: json_equal(left(ctx, seen), right(ctx, seen)) is not negate

    def ordered(ctx: ExpressionContext, seen: Seen) -> bool:
        a = left(ctx, seen)
        b = right(ctx, seen)
        if not ((is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise _ConditionFailure(
                f"type mismatch: cannot compare {describe(a)} with {describe(b)} at column {column}"
            )
        if op == "<":
            return bool(a < b)
        if op == ">":
            return bool(a > b)
        if op == "<=":
            return bool(a <= b)
        return bool(a >= b)

    return ordered


def _render(node: Node, source: str, seen: Seen) -> str:
    if isinstance(node, Group):
        return f"({_render(node.inner, source, seen)})"
    if isinstance(node, Not):
        return "!" + _render(node.operand, source, seen)
    if isinstance(node, BoolOp):
        return f" {node.op} ".join(_render(op, source, seen) for op in node.operands)
    if isinstance(node, Compare):
        return f"{_render(node.left, source, seen)} {node.op} {_render(node.right, source, seen)}"
    if isinstance(node, Literal):
        return render_json(node.value)
    if node.start in seen:
        try:
            return render_json(seen[node.start])
        except ExpressionEvaluationError:
            pass
    return source[node.start : node.end]
