"""Tokenizer for expressions; produces tokens on demand so that an ``@{...}`` segment
inside a longer string can stop at its closing ``}`` without reading the literal text
that follows it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from .errors import ExpressionSyntaxError

_DIGITS = frozenset("0123456789")
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_REST = _IDENT_START | _DIGITS
_WHITESPACE = frozenset(" \t\r\n")


class Kind(Enum):
    """Token kinds."""

    AT = "'@'"
    LPAREN = "'('"
    RPAREN = "')'"
    LBRACKET = "'['"
    RBRACKET = "']'"
    DOT = "'.'"
    QDOT = "'?.'"
    QBRACKET = "'?['"
    COMMA = "','"
    RBRACE = "'}'"
    OP = "operator"
    NOT = "'!'"
    STRING = "string"
    NUMBER = "number"
    IDENT = "name"
    EOF = "end of expression"


@dataclass(frozen=True, slots=True)
class Token:
    """One token. ``start``/``end`` are 0-based offsets into the source text."""

    kind: Kind
    text: str
    start: int
    end: int
    value: object = None

    def describe(self) -> str:
        """Describe the token for an error message, e.g. ``"')'"`` or ``"end of expression"``."""
        if self.kind is Kind.EOF:
            return "end of expression"
        if self.kind is Kind.STRING:
            return f"string {self.text}"
        text = self.text if len(self.text) <= 20 else self.text[:17] + "..."
        return f"'{text}'" if self.kind is not Kind.IDENT else f"name '{text}'"


_SIMPLE = {
    "@": Kind.AT,
    "(": Kind.LPAREN,
    ")": Kind.RPAREN,
    "[": Kind.LBRACKET,
    "]": Kind.RBRACKET,
    ".": Kind.DOT,
    ",": Kind.COMMA,
    "}": Kind.RBRACE,
}
_TWO_CHAR_OPS = frozenset({"==", "!=", ">=", "<=", "&&", "||"})
_HINTS = {"=": "'=='", "&": "'&&'", "|": "'||'"}


class Lexer:
    """Reads tokens from ``source`` starting at offset ``start``."""

    def __init__(self, source: str, start: int = 0) -> None:
        self.source = source
        self.pos = start

    def error(self, message: str, offset: int, hint: str = "") -> ExpressionSyntaxError:
        """Build a syntax error located at 0-based ``offset``."""
        return ExpressionSyntaxError(message, expression=self.source, column=offset + 1, hint=hint)

    def next(self) -> Token:
        """Return the next token (an EOF token at the end of the source)."""
        src = self.source
        n = len(src)
        pos = self.pos
        while pos < n and src[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            self.pos = n
            return Token(Kind.EOF, "", n, n)
        ch = src[pos]
        pair = src[pos : pos + 2]
        if pair == "?.":
            return self._emit(Kind.QDOT, pos, pos + 2)
        if pair == "?[":
            return self._emit(Kind.QBRACKET, pos, pos + 2)
        if pair in _TWO_CHAR_OPS:
            return self._emit(Kind.OP, pos, pos + 2)
        if ch in "<>":
            return self._emit(Kind.OP, pos, pos + 1)
        if ch == "!":
            return self._emit(Kind.NOT, pos, pos + 1)
        kind = _SIMPLE.get(ch)
        if kind is not None:
            return self._emit(kind, pos, pos + 1)
        if ch == "'":
            return self._string(pos)
        if ch in _DIGITS or (ch == "-" and src[pos + 1 : pos + 2] in _DIGITS):
            return self._number(pos)
        if ch in _IDENT_START:
            end = pos + 1
            while end < n and src[end] in _IDENT_REST:
                end += 1
            return self._emit(Kind.IDENT, pos, end)
        if ch in _HINTS:
            raise self.error(f"unexpected '{ch}'", pos, f"did you mean {_HINTS[ch]}?")
        if ch == '"':
            raise self.error("unexpected '\"'", pos, "strings use single quotes, e.g. 'text'")
        raise self.error(f"unexpected character {ch!r}", pos)

    def _emit(self, kind: Kind, start: int, end: int, value: object = None) -> Token:
        self.pos = end
        return Token(kind, self.source[start:end], start, end, value)

    def _string(self, start: int) -> Token:
        src = self.source
        n = len(src)
        parts: list[str] = []
        pos = start + 1
        while True:
            close = src.find("'", pos)
            if close < 0:
                raise self.error("unterminated string literal", start, "close it with '")
            parts.append(src[pos:close])
            if close + 1 < n and src[close + 1] == "'":
                parts.append("'")
                pos = close + 2
                continue
            return self._emit(Kind.STRING, start, close + 1, "".join(parts))

    def _number(self, start: int) -> Token:
        src = self.source
        n = len(src)
        pos = start + 1 if src[start] == "-" else start
        while pos < n and src[pos] in _DIGITS:
            pos += 1
        is_float = False
        if pos + 1 < n and src[pos] == "." and src[pos + 1] in _DIGITS:
            is_float = True
            pos += 1
            while pos < n and src[pos] in _DIGITS:
                pos += 1
        if pos < n and src[pos] in "eE":
            exp = pos + 1
            if exp < n and src[exp] in "+-":
                exp += 1
            if exp < n and src[exp] in _DIGITS:
                is_float = True
                pos = exp
                while pos < n and src[pos] in _DIGITS:
                    pos += 1
        if pos < n and src[pos] in _IDENT_START:
            raise self.error(f"unexpected {src[pos]!r} after number", pos)
        text = src[start:pos]
        value: int | float
        try:
            value = float(text) if is_float else int(text)
        except ValueError:
            raise self.error("number literal is too long", start) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error("number literal is out of range", start)
        return self._emit(Kind.NUMBER, start, pos, value)
