"""The Service Bus SQL filter and rule-action language, parsed by hand into evaluable trees.

Filters: comparisons (``= <> != > < >= <=``), ``AND``/``OR``/``NOT``, parentheses, ``[NOT] IN``,
``[NOT] LIKE`` with ``%``/``_`` and ``ESCAPE``, ``IS [NOT] NULL``, ``EXISTS(prop)``, ``+ - * / %``,
unary minus, string/number/boolean/NULL constants, ``newid()``, ``sys.``/``user.`` scopes
(unscoped means ``user.``), ``[bracketed names]`` and case-insensitive keywords, evaluated with
SQL three-valued logic. Actions: ``SET prop = expr`` and ``REMOVE prop`` separated by ``;``.

Example:
    >>> program = compile_sql_filter("sys.Label = 'order' AND amount > 10")
    >>> program.matches(FilterMessage(subject="order", properties={"amount": 12}))
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from floworch.emulator import sqlfilter_ast as ast
from floworch.emulator.entities import EmulatorError, PropertyValue
from floworch.emulator.filter_message import SYSTEM_PROPERTY_ATTRIBUTES, FilterMessage

__all__ = [
    "FilterMessage",
    "SqlActionProgram",
    "SqlFilterError",
    "SqlFilterProgram",
    "compile_sql_action",
    "compile_sql_filter",
]

_MAX_DEPTH = 200  # deeper trees would overflow Python's stack when evaluated
_MAX_LENGTH = 64 * 1024  # Service Bus itself caps SQL expressions far below this


class SqlFilterError(EmulatorError):
    """A SQL filter or action does not parse.

    Attributes:
        expression: The text given.
        column: 1-based column of the offending character (``len(expression) + 1`` at the end).
        reason: What is wrong there.
    """

    def __init__(self, expression: str, column: int, reason: str) -> None:
        self.expression = expression
        self.column = column
        self.reason = reason
        super().__init__(f"invalid SQL expression at column {column}: {reason} in {expression!r}")


_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "IS", "NULL", "TRUE", "FALSE", "EXISTS"}
)
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<bracket>\[(?:[^\]]|\]\])*\])
  | (?P<op><>|!=|>=|<=|[=<>+\-*/%(),.;])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, ident, bracket, keyword, op, end
    text: str
    column: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            char = text[pos]
            if char == "'":
                raise SqlFilterError(text, pos + 1, "unterminated string constant")
            if char == "[":
                raise SqlFilterError(text, pos + 1, "unterminated [bracketed] name")
            raise SqlFilterError(text, pos + 1, f"unexpected character {char!r}")
        kind = match.lastgroup or "ws"
        if kind != "ws":
            value = match.group()
            if kind == "ident" and value.upper() in _KEYWORDS:
                kind, value = "keyword", value.upper()
            tokens.append(_Token(kind, value, pos + 1))
        pos = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    """Recursive descent, lowest precedence first: OR, AND, NOT, predicates, + -, * / %, unary."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        # Tree depth per node (by id; every node stays referenced while parsing), so deep
        # expressions are rejected at compile time instead of overflowing at evaluation.
        self.depths: dict[int, int] = {}

    # -- token helpers --
    @property
    def current(self) -> _Token:
        return self.tokens[self.pos]

    def error(self, reason: str, token: _Token | None = None) -> SqlFilterError:
        return SqlFilterError(self.text, (token or self.current).column, reason)

    def describe(self, token: _Token) -> str:
        return "the end of the expression" if token.kind == "end" else repr(token.text)

    def accept(self, kind: str, text: str | None = None) -> _Token | None:
        token = self.current
        if token.kind == kind and (text is None or token.text == text):
            self.pos += 1
            return token
        return None

    def expect(self, kind: str, text: str, what: str) -> _Token:
        token = self.accept(kind, text)
        if token is None:
            raise self.error(f"expected {what}, found {self.describe(self.current)}")
        return token

    def keyword(self, word: str) -> bool:
        return self.accept("keyword", word) is not None

    def check_depth(self, node: ast.Node, depth: int, token: _Token) -> ast.Node:
        if depth > _MAX_DEPTH:
            raise self.error("expression is nested too deeply", token)
        self.depths[id(node)] = depth
        return node

    def depth(self, *nodes: ast.Node) -> int:
        return 1 + max((self.depths.get(id(n), 1) for n in nodes), default=0)

    # -- grammar --
    def parse_expression_end(self) -> ast.Node:
        node = self.parse_or()
        if self.current.kind != "end":
            raise self.error(f"unexpected {self.describe(self.current)}")
        return node

    def parse_or(self) -> ast.Node:
        node = self.parse_and()
        while (token := self.accept("keyword", "OR")) is not None:
            right = self.parse_and()
            node = self.check_depth(ast.Binary("OR", node, right), self.depth(node, right), token)
        return node

    def parse_and(self) -> ast.Node:
        node = self.parse_not()
        while (token := self.accept("keyword", "AND")) is not None:
            right = self.parse_not()
            node = self.check_depth(ast.Binary("AND", node, right), self.depth(node, right), token)
        return node

    def parse_not(self) -> ast.Node:
        token = self.accept("keyword", "NOT")
        if token is None:
            return self.parse_predicate()
        operand = self.parse_not()
        return self.check_depth(ast.Not(operand), self.depth(operand), token)

    def parse_predicate(self) -> ast.Node:
        if (token := self.accept("keyword", "EXISTS")) is not None:
            self.expect("op", "(", "'(' after EXISTS")
            prop = self.parse_property()
            self.expect("op", ")", "')' closing EXISTS(")
            assert isinstance(prop, ast.Property)
            return self.check_depth(ast.Exists(prop), 2, token)
        left = self.parse_additive()
        token = self.current
        if token.kind == "op" and token.text in ("=", "<>", "!=", ">", "<", ">=", "<="):
            self.pos += 1
            right = self.parse_additive()
            node: ast.Node = ast.Binary(token.text, left, right)
            return self.check_depth(node, self.depth(left, right), token)
        if self.keyword("IS"):
            negated = self.keyword("NOT")
            self.expect("keyword", "NULL", "NULL after IS")
            node = ast.IsNull(left)
            node = ast.Not(node) if negated else node
            return self.check_depth(node, self.depth(left) + 1, token)
        negated = False
        if token.kind == "keyword" and token.text == "NOT":
            nxt = self.tokens[self.pos + 1]
            if not (nxt.kind == "keyword" and nxt.text in ("IN", "LIKE")):
                raise self.error("expected IN or LIKE after NOT", nxt)
            self.pos += 1
            negated = True
        if self.keyword("IN"):
            node = self.parse_in(left)
        elif self.keyword("LIKE"):
            node = self.parse_like(left)
        else:
            return left
        node = ast.Not(node) if negated else node
        return self.check_depth(node, self.depth(left) + 2, token)

    def parse_in(self, left: ast.Node) -> ast.Node:
        self.expect("op", "(", "'(' after IN")
        choices = [self.parse_additive()]
        while self.accept("op", ",") is not None:
            choices.append(self.parse_additive())
        self.expect("op", ")", "',' or ')' in the IN list")
        return ast.In(left, tuple(choices))

    def parse_like(self, left: ast.Node) -> ast.Node:
        pattern = self.parse_additive()
        escape: str | None = None
        if self.keyword("ESCAPE"):
            token = self.current
            if token.kind != "string" or len(_unquote(token.text)) != 1:
                raise self.error("ESCAPE needs a one-character string such as '!'")
            escape = _unquote(token.text)
            self.pos += 1
        compiled = None
        if isinstance(pattern, ast.Constant):
            if not isinstance(pattern.value, str):
                raise self.error("LIKE needs a string pattern")
            compiled = ast.like_regex(pattern.value, escape)
        return ast.Like(left, pattern, escape, compiled)

    def parse_additive(self) -> ast.Node:
        node = self.parse_multiplicative()
        while self.current.kind == "op" and self.current.text in ("+", "-"):
            token = self.current
            self.pos += 1
            right = self.parse_multiplicative()
            node = self.check_depth(
                ast.Binary(token.text, node, right), self.depth(node, right), token
            )
        return node

    def parse_multiplicative(self) -> ast.Node:
        node = self.parse_unary()
        while self.current.kind == "op" and self.current.text in ("*", "/", "%"):
            token = self.current
            self.pos += 1
            right = self.parse_unary()
            node = self.check_depth(
                ast.Binary(token.text, node, right), self.depth(node, right), token
            )
        return node

    def parse_unary(self) -> ast.Node:
        token = self.current
        if token.kind == "op" and token.text in ("+", "-"):
            self.pos += 1
            operand = self.parse_unary()
            if token.text == "+":
                return operand
            if isinstance(operand, ast.Constant) and isinstance(operand.value, int | float):
                # Fold so that -9223372036854775808 is a valid long constant.
                value = -operand.value
                if isinstance(value, int) and not ast.LONG_MIN <= value <= ast.LONG_MAX:
                    raise self.error("integer constant out of range", token)
                return ast.Constant(value)
            return self.check_depth(ast.Negate(operand), self.depth(operand), token)
        return self.parse_primary()

    def parse_primary(self) -> ast.Node:
        token = self.current
        if token.kind == "op" and token.text == "(":
            self.pos += 1
            node = self.parse_or()
            self.expect("op", ")", "')'")
            return self.check_depth(node, self.depth(node), token)
        if token.kind == "number":
            self.pos += 1
            return ast.Constant(self.number(token))
        if token.kind == "string":
            self.pos += 1
            return ast.Constant(_unquote(token.text))
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE", "NULL"):
            self.pos += 1
            return ast.Constant({"TRUE": True, "FALSE": False, "NULL": None}[token.text])
        if token.kind == "ident" and self.tokens[self.pos + 1].text == "(":
            if token.text.lower() != "newid":
                raise self.error(f"unknown function {token.text!r}; only newid() is supported")
            self.pos += 2
            self.expect("op", ")", "')' after newid(")
            return ast.NewId()
        return self.parse_property()

    def number(self, token: _Token) -> int | float:
        text = token.text
        if re.fullmatch(r"\d+", text):
            value = int(text)
            # The parser folds unary minus, so allow LONG_MAX + 1 here for LONG_MIN.
            if value > ast.LONG_MAX + 1:
                raise self.error("integer constant out of range", token)
            return value
        return float(text)

    def parse_property(self) -> ast.Node:
        token = self.current
        name = self.name_token()
        if name is None:
            raise self.error(f"expected a value or property name, found {self.describe(token)}")
        if self.accept("op", ".") is None:
            return ast.Property(name, system=False)
        scope = name.lower()
        if token.kind != "ident" or scope not in ("sys", "user"):
            raise self.error(f"unknown scope {name!r}; use sys. or user.", token)
        prop_token = self.current
        prop = self.name_token()
        if prop is None:
            raise self.error(f"expected a property name after {name}.")
        if scope == "sys":
            if prop.casefold() not in SYSTEM_PROPERTY_ATTRIBUTES:
                raise self.error(f"unknown system property {prop!r}", prop_token)
            return ast.Property(prop, system=True)
        return ast.Property(prop, system=False)

    def name_token(self) -> str | None:
        token = self.current
        if token.kind == "ident":
            self.pos += 1
            return token.text
        if token.kind == "bracket":
            self.pos += 1
            return token.text[1:-1].replace("]]", "]")
        return None


def _unquote(text: str) -> str:
    return text[1:-1].replace("''", "'")


def _parse(text: str, build: type[_Parser], method: str) -> object:
    if len(text) > _MAX_LENGTH:
        raise SqlFilterError(text, _MAX_LENGTH + 1, "expression is too long")
    parser = build(text)
    try:
        return getattr(parser, method)()
    except RecursionError as exc:
        column = parser.current.column
        raise SqlFilterError(text, column, "expression is nested too deeply") from exc


@dataclass(frozen=True)
class SqlFilterProgram:
    """A compiled SQL filter. ``matches`` is true only when the expression evaluates to TRUE."""

    expression: str
    root: ast.Node

    def evaluate(self, message: FilterMessage) -> PropertyValue:
        """The raw value of the expression for ``message`` (``None`` is SQL NULL)."""
        return self.root.evaluate(message)

    def matches(self, message: FilterMessage) -> bool:
        """Whether the filter selects ``message`` (NULL and non-boolean results do not)."""
        return self.root.evaluate(message) is True


def compile_sql_filter(text: str) -> SqlFilterProgram:
    """Parse a Service Bus SQL filter expression once.

    Raises:
        SqlFilterError: with the column of the first problem.
    """
    root = _parse(text, _Parser, "parse_expression_end")
    assert isinstance(root, ast.Node)
    return SqlFilterProgram(text, root)


@dataclass(frozen=True)
class _SetStatement:
    target: ast.Property
    value: ast.Node


@dataclass(frozen=True)
class _RemoveStatement:
    target: ast.Property


class _ActionParser(_Parser):
    def parse_action_end(self) -> list[_SetStatement | _RemoveStatement]:
        statements: list[_SetStatement | _RemoveStatement] = []
        while self.current.kind != "end":
            token = self.current
            verb = token.text.upper() if token.kind == "ident" else ""
            if verb not in ("SET", "REMOVE"):
                raise self.error(f"expected SET or REMOVE, found {self.describe(token)}")
            self.pos += 1
            target = self.parse_property()
            assert isinstance(target, ast.Property)
            if verb == "SET":
                self.expect("op", "=", "'=' after the property to SET")
                statements.append(_SetStatement(target, self.parse_or()))
            else:
                statements.append(_RemoveStatement(target))
            if self.accept("op", ";") is None and self.current.kind != "end":
                raise self.error(f"expected ';' or the end, found {self.describe(self.current)}")
        if not statements:
            raise self.error("expected at least one SET or REMOVE statement")
        return statements


@dataclass(frozen=True)
class SqlActionProgram:
    """A compiled SQL rule action; ``apply`` mutates the message's properties in order."""

    expression: str
    statements: tuple[_SetStatement | _RemoveStatement, ...]

    def apply(self, message: FilterMessage) -> None:
        """Run every statement against ``message`` (REMOVE of a missing property is a no-op)."""
        for statement in self.statements:
            target = statement.target
            if isinstance(statement, _SetStatement):
                value = statement.value.evaluate(message)
                if target.system:
                    message.set_system_property(target.name, value)
                else:
                    message.properties[target.name] = value
            elif target.system:
                message.set_system_property(target.name, None)
            else:
                message.properties.pop(target.name, None)


def compile_sql_action(text: str) -> SqlActionProgram:
    """Parse a SQL rule action (``SET user.a = 1; REMOVE b``) once.

    Raises:
        SqlFilterError: with the column of the first problem.
    """
    statements = _parse(text, _ActionParser, "parse_action_end")
    assert isinstance(statements, list)
    return SqlActionProgram(text, tuple(statements))
