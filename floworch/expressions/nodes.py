"""Syntax tree produced by the parser. Offsets are 0-based into the source text.

Navigation chains and ``&&``/``||`` runs are flat tuples rather than nested nodes, so a long
``a.b.c...`` or ``x && y && ...`` is compiled and evaluated with loops, not recursion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Literal:
    """A string, number, ``true``, ``false`` or ``null`` literal."""

    value: Any
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Call:
    """A call of a built-in function, e.g. ``coalesce(a, 'x')``."""

    name: str
    args: tuple[Node, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class StepRef:
    """``steps('key')``; the key is always a literal so references are known at compile time."""

    key: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Access:
    """One navigation step: ``.name``, ``?.name``, ``[expr]`` or ``?[expr]``.

    Exactly one of ``name`` and ``index`` is set.
    """

    name: str | None
    index: Node | None
    optional: bool
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Chain:
    """A call followed by one or more accesses, e.g. ``triggerBody()?.a.b[0]``."""

    base: Call | StepRef
    accesses: tuple[Access, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Not:
    """``!operand`` (conditions only)."""

    operand: Node
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right`` with op one of ``== != < > <= >=`` (conditions only)."""

    op: str
    left: Node
    right: Node
    op_start: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class BoolOp:
    """A run of ``&&`` or of ``||`` (conditions only); ``op_starts[i]`` precedes operand i+1."""

    op: str
    operands: tuple[Node, ...]
    op_starts: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Group:
    """A parenthesised sub-condition, kept so the resolved trace shows the parentheses."""

    inner: Node
    start: int
    end: int


Node = Literal | Call | StepRef | Chain | Not | Compare | BoolOp | Group
