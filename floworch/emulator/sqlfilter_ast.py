"""The evaluated tree of a Service Bus SQL filter: nodes and their SQL-92 value semantics.

Values are ``None`` (SQL NULL / unknown), bool, int (a .NET ``long``), float, str, datetime,
timedelta or UUID. Comparisons and arithmetic involving NULL, mismatched types, a division by zero
or a ``long`` overflow yield NULL, and a filter matches only when it evaluates to TRUE, so such
messages simply do not match instead of failing the broker.
"""

from __future__ import annotations

import math
import operator
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from floworch.emulator.entities import PropertyValue

if TYPE_CHECKING:
    from floworch.emulator.filter_message import FilterMessage

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1


class Node:
    """A node of a compiled filter; ``evaluate`` never raises for any message."""

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Node):
    value: PropertyValue

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        return self.value


@dataclass(frozen=True)
class Property(Node):
    """``sys.Name`` (``system=True``; the name was checked at compile time) or a user property."""

    name: str
    system: bool

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        if self.system:
            return message.system_property(self.name)
        return message.properties.get(self.name)

    def exists(self, message: FilterMessage) -> bool:
        if self.system:
            return message.system_property(self.name) is not None
        return self.name in message.properties


@dataclass(frozen=True)
class NewId(Node):
    """``newid()``: a fresh GUID per evaluation, as Service Bus does."""

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        return uuid.uuid4()


def _is_number(value: PropertyValue) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_bool(value: PropertyValue) -> bool | None:
    return value if isinstance(value, bool) else None


def _comparable(left: PropertyValue, right: PropertyValue) -> bool:
    if _is_number(left) and _is_number(right):
        return True
    return type(left) is type(right)


def compare(op: str, left: PropertyValue, right: PropertyValue) -> bool | None:
    """SQL comparison: NULL when either side is NULL or the types cannot be compared."""
    if left is None or right is None or not _comparable(left, right):
        return None
    if op in ("=", "<>", "!="):
        equal = left == right
        return equal if op == "=" else not equal
    if isinstance(left, bool | uuid.UUID):
        return None  # booleans and GUIDs have equality but no order in Service Bus SQL
    try:
        return bool(_ORDERING[op](left, right))
    except TypeError:
        return None


_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def _checked_long(value: int) -> int | None:
    return value if LONG_MIN <= value <= LONG_MAX else None


def arithmetic(op: str, left: PropertyValue, right: PropertyValue) -> PropertyValue:
    """``+ - * / %`` on numbers (long stays long, like .NET) and ``+`` on strings."""
    if left is None or right is None:
        return None
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if not (_is_number(left) and _is_number(right)):
        return None
    assert isinstance(left, int | float) and isinstance(right, int | float)
    if isinstance(left, int) and isinstance(right, int):
        if op in ("/", "%") and right == 0:
            return None
        if op == "/":
            # .NET integer division truncates toward zero, Python's floors.
            quotient = abs(left) // abs(right)
            return _checked_long(quotient if (left >= 0) == (right >= 0) else -quotient)
        if op == "%":
            return _checked_long(int(math.fmod(left, right)))
        return _checked_long(_INT_OPS[op](left, right))
    a, b = float(left), float(right)
    if op == "/":
        return None if b == 0 else a / b
    if op == "%":
        return None if b == 0 else math.fmod(a, b)
    return float(_INT_OPS[op](a, b))


_INT_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        if self.op == "AND":
            lhs = _as_bool(self.left.evaluate(message))
            if lhs is False:
                return False
            rhs = _as_bool(self.right.evaluate(message))
            if rhs is False:
                return False
            return True if lhs and rhs else None
        if self.op == "OR":
            lhs = _as_bool(self.left.evaluate(message))
            if lhs is True:
                return True
            rhs = _as_bool(self.right.evaluate(message))
            if rhs is True:
                return True
            return False if lhs is False and rhs is False else None
        left = self.left.evaluate(message)
        right = self.right.evaluate(message)
        if self.op in ("=", "<>", "!=", ">", "<", ">=", "<="):
            return compare(self.op, left, right)
        return arithmetic(self.op, left, right)


@dataclass(frozen=True)
class Not(Node):
    operand: Node

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        value = _as_bool(self.operand.evaluate(message))
        return None if value is None else not value


@dataclass(frozen=True)
class Negate(Node):
    operand: Node

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        value = self.operand.evaluate(message)
        if isinstance(value, int) and not isinstance(value, bool):
            return _checked_long(-value)
        if isinstance(value, float):
            return -value
        return None


@dataclass(frozen=True)
class In(Node):
    operand: Node
    choices: Sequence[Node]

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        value = self.operand.evaluate(message)
        if value is None:
            return None
        unknown = False
        for choice in self.choices:
            result = compare("=", value, choice.evaluate(message))
            if result is True:
                return True
            unknown = unknown or result is None
        return None if unknown else False


def like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    """Translate a LIKE pattern (``%`` any run, ``_`` one character) to an anchored regex."""
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if escape is not None and char == escape:
            nxt = next(chars, None)
            # A trailing escape character stands for itself.
            parts.append(re.escape(nxt if nxt is not None else char))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class Like(Node):
    operand: Node
    pattern: Node
    escape: str | None
    compiled: re.Pattern[str] | None  # set when the pattern is a constant, compiled once

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        value = self.operand.evaluate(message)
        if not isinstance(value, str):
            return None
        regex = self.compiled
        if regex is None:
            pattern = self.pattern.evaluate(message)
            if not isinstance(pattern, str):
                return None
            regex = like_regex(pattern, self.escape)
        return regex.fullmatch(value) is not None


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        return self.operand.evaluate(message) is None


@dataclass(frozen=True)
class Exists(Node):
    prop: Property

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        return self.prop.exists(message)
