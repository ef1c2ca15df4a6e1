"""A parser for Bicep expressions, with Bicep's operator precedence.

tree-sitter-bicep 1.1.0 finds declarations and syntax errors reliably, but its expression trees
cannot be evaluated: it binds ``.``/``[]`` looser than binary operators (``a == b.c`` parses as
``(a == b).c``) and lambdas tighter than anything (``e => e.key`` as ``(e => e).key``). So the
evaluator re-parses each declaration's value text here. Precedence, from the Bicep operator
docs, highest first: ``. [] ()``, unary ``! -``, ``* / %``, ``+ -``, ``< <= > >=``,
``== != =~ !~``, ``&&``, ``||``, ``??``, ``? :``, then lambdas (their body runs to the end).

The tree is made of tuples: ``("lit", v)``, ``("str", [text | node, ...])``, ``("array", [...])``,
``("object", [(key, node), ...])``, ``("ident", name)``, ``("member", obj, name, safe)``,
``("index", obj, index, safe)``, ``("call", name, [args])``, ``("unary", op, x)``,
``("binary", op, left, right)``, ``("ternary", cond, yes, no)``, ``("lambda", [names], body)``,
``("for", item, index_or_None, source, body)``, ``("if", cond, body)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Node = tuple[Any, ...]


class ExprSyntaxError(Exception):
    """An expression this parser cannot read (with the offending text)."""


@dataclass(frozen=True)
class Token:
    kind: str  # ident, num, str, mstr, op, end
    value: Any
    nl_before: bool
    pos: int


_OPS = sorted(
    [
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        ".",
        "?",
        "??",
        ".?",
        "=>",
        "==",
        "!=",
        "=~",
        "!~",
        "<=",
        ">=",
        "<",
        ">",
        "&&",
        "||",
        "!",
        "-",
        "+",
        "*",
        "/",
        "%",
        "@",
        "::",
    ],
    key=len,
    reverse=True,
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+")
_ESCAPES = {"'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


def _string_end(text: str, start: int) -> tuple[list[Any], int]:
    """Reads a '...' string from ``start`` (the quote); returns its parts and the index after."""
    parts: list[Any] = []
    buffer: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            buffer.append(_ESCAPES.get(text[i + 1], "\\" + text[i + 1]))
            i += 2
        elif char == "'":
            if buffer or not parts:
                parts.append("".join(buffer))
            return parts, i + 1
        elif text.startswith("${", i):
            if buffer:
                parts.append("".join(buffer))
                buffer = []
            end = _interpolation_end(text, i + 2)
            parts.append(parse_expression(text[i + 2 : end]))
            i = end + 1
        else:
            buffer.append(char)
            i += 1
    raise ExprSyntaxError(f"unterminated string in {text[start : start + 40]!r}")


def _interpolation_end(text: str, start: int) -> int:
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "'":
            _parts, i = _string_end(text, i)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise ExprSyntaxError(f"unterminated interpolation in {text[start : start + 40]!r}")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    newline = False
    while i < len(text):
        char = text[i]
        if char == "\n":
            newline = True
            i += 1
        elif char in " \t\r":
            i += 1
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ExprSyntaxError("unterminated comment")
            newline = newline or "\n" in text[i:end]
            i = end + 2
        elif text.startswith("'''", i):
            end = text.find("'''", i + 3)
            if end < 0:
                raise ExprSyntaxError("unterminated multi-line string")
            tokens.append(Token("str", [text[i + 3 : end].removeprefix("\n")], newline, i))
            newline = False
            i = end + 3
        elif char == "'":
            parts, end = _string_end(text, i)
            tokens.append(Token("str", parts, newline, i))
            newline = False
            i = end
        elif match := _IDENT.match(text, i):
            tokens.append(Token("ident", match.group(), newline, i))
            newline = False
            i = match.end()
        elif match := _NUMBER.match(text, i):
            tokens.append(Token("num", int(match.group()), newline, i))
            newline = False
            i = match.end()
        else:
            for op in _OPS:
                if text.startswith(op, i):
                    tokens.append(Token("op", op, newline, i))
                    newline = False
                    i += len(op)
                    break
            else:
                raise ExprSyntaxError(f"unexpected {char!r} at {text[i : i + 30]!r}")
    tokens.append(Token("end", None, newline, len(text)))
    return tokens


_BINARY = {
    "??": 1,
    "||": 2,
    "&&": 3,
    "==": 4,
    "!=": 4,
    "=~": 4,
    "!~": 4,
    "<": 5,
    "<=": 5,
    ">": 5,
    ">=": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
    "%": 7,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def next(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def is_op(self, value: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token.kind == "op" and token.value == value

    def expect(self, value: str) -> Token:
        token = self.next()
        if token.kind != "op" or token.value != value:
            raise self.error(f"expected {value!r}", token)
        return token

    def error(self, message: str, token: Token) -> ExprSyntaxError:
        return ExprSyntaxError(f"{message} at {self.text[token.pos : token.pos + 40]!r}")

    # expression := lambda | ternary
    def expression(self) -> Node:
        if self.peek().kind == "ident" and self.is_op("=>", 1):
            name = self.next().value
            self.next()
            return ("lambda", [name], self.expression())
        if self.is_op("(") and self._lambda_params_ahead():
            self.next()
            names = []
            while not self.is_op(")"):
                names.append(self.next().value)
                if self.is_op(","):
                    self.next()
            self.expect(")")
            self.expect("=>")
            return ("lambda", names, self.expression())
        return self.ternary()

    def _lambda_params_ahead(self) -> bool:
        j = 1
        while True:
            token = self.peek(j)
            if token.kind == "op" and token.value == ")":
                return self.is_op("=>", j + 1)
            if token.kind != "ident" and not (token.kind == "op" and token.value == ","):
                return False
            j += 1

    def ternary(self) -> Node:
        condition = self.binary(1)
        if self.is_op("?"):
            self.next()
            yes = self.expression()
            self.expect(":")
            no = self.expression()
            return ("ternary", condition, yes, no)
        return condition

    def binary(self, min_prec: int) -> Node:
        left = self.unary()
        while True:
            token = self.peek()
            prec = _BINARY.get(token.value) if token.kind == "op" else None
            if prec is None or prec < min_prec:
                return left
            self.next()
            right = self.binary(prec + 1)
            left = ("binary", token.value, left, right)

    def unary(self) -> Node:
        if self.is_op("!") or self.is_op("-"):
            op = self.next().value
            operand = self.unary()
            if op == "-" and operand[0] == "lit" and isinstance(operand[1], int):
                return ("lit", -operand[1])
            return ("unary", op, operand)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token.nl_before or token.kind != "op":
                return node
            if token.value in (".", ".?"):
                self.next()
                name = self.next()
                if name.kind != "ident":
                    raise self.error("expected a property name", name)
                if self.is_op("(") and not self.peek().nl_before:
                    node = self.call(f"{_dotted(node)}.{name.value}")
                else:
                    node = ("member", node, name.value, token.value == ".?")
            elif token.value == "[":
                self.next()
                safe = False
                if self.is_op("?"):
                    self.next()
                    safe = True
                index = self.expression()
                self.expect("]")
                node = ("index", node, index, safe)
            else:
                return node

    def call(self, name: str) -> Node:
        self.expect("(")
        args = []
        while not self.is_op(")"):
            args.append(self.expression())
            if self.is_op(","):
                self.next()
            elif not self.is_op(")"):
                raise self.error("expected ',' or ')'", self.peek())
        self.expect(")")
        return ("call", name, args)

    def primary(self) -> Node:
        token = self.peek()
        if token.kind == "num":
            self.next()
            return ("lit", token.value)
        if token.kind == "str":
            self.next()
            return ("str", token.value)
        if token.kind == "ident":
            self.next()
            if token.value in ("true", "false"):
                return ("lit", token.value == "true")
            if token.value == "null":
                return ("lit", None)
            if token.value == "if" and self.is_op("("):
                self.expect("(")
                condition = self.expression()
                self.expect(")")
                return ("if", condition, self.expression())
            if self.is_op("(") and not self.peek().nl_before:
                return self.call(token.value)
            return ("ident", token.value)
        if self.is_op("("):
            self.next()
            inner = self.expression()
            self.expect(")")
            return inner
        if self.is_op("["):
            return self.array()
        if self.is_op("{"):
            return self.object()
        raise self.error("expected a value", token)

    def array(self) -> Node:
        self.expect("[")
        if self.peek().kind == "ident" and self.peek().value == "for":
            self.next()
            if self.is_op("("):
                self.next()
                item = self.next().value
                self.expect(",")
                index = self.next().value
                self.expect(")")
            else:
                item, index = self.next().value, None
            keyword = self.next()
            if keyword.value != "in":
                raise self.error("expected 'in'", keyword)
            source = self.expression()
            self.expect(":")
            body = self.expression()
            self.expect("]")
            return ("for", item, index, source, body)
        items = []
        while not self.is_op("]"):
            items.append(self.expression())
            if self.is_op(","):
                self.next()
        self.expect("]")
        return ("array", items)

    def object(self) -> Node:
        self.expect("{")
        members: list[tuple[Any, Node]] = []
        while not self.is_op("}"):
            key_token = self.next()
            if key_token.kind == "ident":
                key: Any = key_token.value
            elif key_token.kind == "str":
                parts = key_token.value
                key = parts[0] if len(parts) == 1 and isinstance(parts[0], str) else ("str", parts)
            else:
                raise self.error("expected a property name", key_token)
            self.expect(":")
            members.append((key, self.expression()))
            if self.is_op(","):
                self.next()
        self.expect("}")
        return ("object", members)


def _dotted(node: Node) -> str:
    if node[0] == "ident":
        return str(node[1])
    raise ExprSyntaxError("a method call on an expression is not supported")


def parse_expression(text: str) -> Node:
    """Parses one Bicep expression (a declaration's value, a lambda, an object...)."""
    parser = _Parser(text)
    node = parser.expression()
    if parser.peek().kind != "end":
        raise parser.error("unexpected text after the expression", parser.peek())
    return node
