"""Compiles value nodes into closures, so evaluation never re-reads the syntax tree.

A value node becomes a function ``ctx -> value``. Navigation chains compile to a base
function plus a list of access steps applied in a loop. The text an error message quotes
(``triggerBody().a.b``) is cut from the source only when an error is raised: building it for
every access of a long chain up front would cost memory quadratic in the chain's length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from .context import ExpressionContext
from .errors import ExpressionEvaluationError
from .functions import FUNCTIONS, Evaluator
from .json_values import describe
from .nodes import Access, BoolOp, Call, Chain, Compare, Group, Literal, Node, Not, StepRef

AccessStep = Callable[[Any, ExpressionContext], Any]

_MAX_LISTED_KEYS = 8
_ITEM_FUNCTIONS = frozenset({"item", "index"})


@dataclass(frozen=True, slots=True)
class Where:
    """Where an access sits in its source, for error messages, cut out only when needed.

    Attributes:
        source: the expression text.
        start: offset where the chain starts.
        end: offset just after this access.
        left_name: the property name read by the access before (None: cut ``left`` from the
            source, from ``start`` to ``left_end``).
        left_end: offset just after the left side.
    """

    source: str
    start: int
    end: int
    left_name: str | None
    left_end: int

    @property
    def path(self) -> str:
        """The chain's text up to and including this access."""
        return self.source[self.start : self.end]

    @property
    def left(self) -> str:
        """A short name for the value the access reads from."""
        if self.left_name is not None:
            return self.left_name
        return self.source[self.start : self.left_end]


def compile_node(node: Node, source: str) -> Evaluator:
    """Compile a value node (literal, call, ``steps()``, chain) into an evaluator.

    Args:
        node: A node produced by the parser's value rules.
        source: The text the node's offsets refer to, used in error messages.

    Returns:
        A function evaluating the node against an expression context.
    """
    if isinstance(node, Literal):
        constant = node.value
        return lambda ctx: constant
    if isinstance(node, Call):
        return _compile_call(node, source)
    if isinstance(node, StepRef):
        return _compile_step(node)
    if isinstance(node, Chain):
        return _compile_chain(node, source)
    raise TypeError(f"{type(node).__name__} is a condition node, not a value")


def collect_references(node: Node) -> tuple[frozenset[str], bool]:
    """Return the step keys a node reads via ``steps('key')`` and whether it uses item()/index()."""
    steps: set[str] = set()
    uses_item = False
    pending: list[Node] = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, StepRef):
            steps.add(current.key)
        elif isinstance(current, Call):
            uses_item = uses_item or current.name in _ITEM_FUNCTIONS
            pending.extend(current.args)
        elif isinstance(current, Chain):
            pending.append(current.base)
            pending.extend(a.index for a in current.accesses if a.index is not None)
        elif isinstance(current, Not | Group):
            pending.append(current.operand if isinstance(current, Not) else current.inner)
        elif isinstance(current, Compare):
            pending.extend((current.left, current.right))
        elif isinstance(current, BoolOp):
            pending.extend(current.operands)
    return frozenset(steps), uses_item


def _compile_call(node: Call, source: str) -> Evaluator:
    # Accessors are the hottest calls; bind them directly.
    if node.name == "triggerBody":
        return lambda ctx: ctx.trigger_body()
    if node.name == "item":
        return lambda ctx: ctx.item()
    if node.name == "index":
        return lambda ctx: ctx.index()
    spec = FUNCTIONS[node.name]
    args = tuple(compile_node(arg, source) for arg in node.args)
    lazy = spec.lazy
    if lazy is not None:
        return lambda ctx: lazy(ctx, args)
    eager = spec.eager
    assert eager is not None, f"function {spec.name} has no implementation"
    return lambda ctx: eager(ctx, [arg(ctx) for arg in args])


def _compile_step(node: StepRef) -> Evaluator:
    key = node.key

    def step(ctx: ExpressionContext) -> Any:
        view = ctx.step(key)
        if view is None:
            raise _step_missing(key, f"steps('{key}')", "")
        return view.to_dict()

    return step


def _step_missing(key: str, path: str, field: str) -> ExpressionEvaluationError:
    hint = f"steps('{key}')?.{field}" if field else f"steps('{key}')?.output"
    return ExpressionEvaluationError(
        f"{path}: step '{key}' has not run in this run or does not exist; use {hint} to allow that"
    )


def _compile_chain(chain: Chain, source: str) -> Evaluator:
    accesses = list(chain.accesses)
    base: Evaluator
    if isinstance(chain.base, StepRef):
        first = accesses.pop(0)
        field = first.name
        if field is None:
            assert isinstance(first.index, Literal)
            field = str(first.index.value)
        path = source[chain.start : first.end]
        base = _compile_step_field(chain.base.key, field, first.optional, path)
        left_name: str | None = field
        left_end = first.end
    else:
        base = compile_node(chain.base, source)
        left_name = None
        left_end = chain.base.end
    steps: list[AccessStep] = []
    for access in accesses:
        where = Where(source, chain.start, access.end, left_name, left_end)
        steps.append(_compile_access(access, where, source))
        left_name, left_end = access.name, access.end
    if not steps:
        return base
    if len(steps) == 1:
        only = steps[0]
        return lambda ctx: only(base(ctx), ctx)

    def run(ctx: ExpressionContext) -> Any:
        value = base(ctx)
        for step in steps:
            value = step(value, ctx)
        return value

    return run


def _compile_step_field(key: str, field: str, optional: bool, path: str) -> Evaluator:
    getter = attrgetter(field)

    def step_field(ctx: ExpressionContext) -> Any:
        view = ctx.step(key)
        if view is None:
            if optional:
                return None
            raise _step_missing(key, path, field)
        return getter(view)

    return step_field


def _compile_access(access: Access, where: Where, source: str) -> AccessStep:
    optional = access.optional
    if access.name is not None:
        name = access.name

        def member(value: Any, ctx: ExpressionContext) -> Any:
            if type(value) is dict:
                try:
                    return value[name]
                except KeyError:
                    if optional:
                        return None
                    raise _missing_key(value, name, where.path, "?.") from None
            return lookup(value, name, optional=optional, where=where, marker=".")

        return member
    assert access.index is not None
    if isinstance(access.index, Literal):
        constant = access.index.value

        def constant_index(value: Any, ctx: ExpressionContext) -> Any:
            return lookup(value, constant, optional=optional, where=where, marker="[")

        return constant_index
    index = compile_node(access.index, source)

    def dynamic_index(value: Any, ctx: ExpressionContext) -> Any:
        return lookup(value, index(ctx), optional=optional, where=where, marker="[")

    return dynamic_index


def lookup(value: Any, key: Any, *, optional: bool, where: Where, marker: str) -> Any:
    """Read ``value[key]`` with the language's rules for null, missing keys and indexes.

    Args:
        value: The left side.
        key: A property name (str) or array index (int).
        optional: True for ``?.``/``?[``: null on the left, a missing property or an index
            past the end yield None instead of an error.
        where: Where the access sits in its expression, for messages.
        marker: ``"."`` or ``"["``, which syntax the access used.

    Raises:
        ExpressionEvaluationError: the access is not allowed.
    """
    safe = "?." if marker == "." else "?["
    if value is None:
        if optional:
            return None
        raise ExpressionEvaluationError(
            f"{where.path}: '{where.left}' is null; use {safe} to allow null"
        )
    if isinstance(key, str):
        if isinstance(value, Mapping):
            if key in value:
                return value[key]
            if optional:
                return None
            raise _missing_key(value, key, where.path, safe)
        raise ExpressionEvaluationError(
            f"{where.path}: cannot read property '{key}' of {describe(value)}"
        )
    if isinstance(key, int) and not isinstance(key, bool):
        if isinstance(value, list | tuple):
            if key < 0:
                raise ExpressionEvaluationError(
                    f"{where.path}: negative index {key} is not supported; indexes start at 0"
                )
            if key < len(value):
                return value[key]
            if optional:
                return None
            raise ExpressionEvaluationError(
                f"{where.path}: index {key} is out of range for an array of {len(value)} "
                f"item{'' if len(value) == 1 else 's'}; use ?[ to allow that"
            )
        raise ExpressionEvaluationError(
            f"{where.path}: cannot index {describe(value)} with number {key}"
        )
    raise ExpressionEvaluationError(
        f"{where.path}: an index must be a string or a whole number, got {describe(key)}"
    )


def _missing_key(
    value: Mapping[Any, Any], key: str, path: str, safe: str
) -> ExpressionEvaluationError:
    keys = [str(k) for k in list(value)[: _MAX_LISTED_KEYS + 1]]
    if not keys:
        available = "the object is empty"
    else:
        more = ", ..." if len(keys) > _MAX_LISTED_KEYS else ""
        available = "it has " + ", ".join(keys[:_MAX_LISTED_KEYS]) + more
    return ExpressionEvaluationError(
        f"{path}: property '{key}' is missing ({available}); use {safe} to allow a missing property"
    )
