"""Recursive-descent parser for values (``@...``, ``@{...}``) and When conditions.

Grammar (conditions only use the first five rules; values start at ``value``)::

    condition := '@'? or_expr
    or_expr   := and_expr ('||' and_expr)*
    and_expr  := compare ('&&' compare)*
    compare   := unary (('==' | '!=' | '<' | '>' | '<=' | '>=') unary)?
    unary     := '!' unary | operand
    operand   := '(' or_expr ')' | '@'? value
    value     := literal | call access*
    call      := NAME '(' (value (',' value)*)? ')'
    access    := ('.' | '?.') NAME | ('[' | '?[') value ']'
"""

from __future__ import annotations

from collections.abc import Callable

from floworch.limits import MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_LENGTH

from .errors import ExpressionSyntaxError
from .functions import FUNCTIONS, KNOWN_FUNCTIONS
from .lexer import Kind, Lexer, Token
from .nodes import Access, BoolOp, Call, Chain, Compare, Group, Literal, Node, Not, StepRef

MAX_DEPTH = MAX_EXPRESSION_DEPTH
"""Deepest nesting of calls, brackets, parentheses and ``!`` an expression may use."""
MAX_LENGTH = MAX_EXPRESSION_LENGTH
"""Most characters one expression (``@...``, one ``@{...}``, a When clause) may have."""

_KEYWORDS = {"true": True, "false": False, "null": None}
_COMPARISONS = frozenset({"==", "!=", "<", ">", "<=", ">="})
_STEP_FIELDS = ("output", "status", "error")
_OPERATOR_HINT = (
    "operators are only allowed between the operands of a When condition; "
    "in values and function arguments use equals(), not(), and() or or()"
)


class Parser:
    """Parses one expression out of ``source``, starting at offset ``start``."""

    def __init__(self, source: str, start: int = 0) -> None:
        self.source = source
        self.in_condition = False
        self.origin = start
        self.lexer = Lexer(source, start)
        self.token = self.lexer.next()
        self.depth = 0
        self.check_length()

    # -- entry points -------------------------------------------------------------------

    def parse_value_to_end(self) -> Node:
        """Parse a whole-value expression that must run to the end of the source."""
        if self.token.kind is Kind.EOF:
            raise self.error("empty expression after '@'", self.token)
        node = self.value()
        self.expect_end(Kind.EOF)
        return node

    def parse_embedded(self) -> tuple[Node, int]:
        """Parse the inside of ``@{...}``; return the node and the offset after ``}``."""
        if self.token.kind is Kind.RBRACE:
            raise self.error("empty expression in '@{}'", self.token)
        if self.token.kind is Kind.EOF:
            raise self.error("unterminated '@{'", self.token, "expected an expression and '}'")
        node = self.value()
        # Check the '}' without advancing: the lexer must not read the literal text after it.
        closing = self.expect_end(Kind.RBRACE, advance=False)
        return node, closing.end

    def parse_condition(self) -> Node:
        """Parse a When clause (an optional leading ``@`` is allowed)."""
        self.in_condition = True
        if self.token.kind is Kind.AT:
            self.advance()
        if self.token.kind is Kind.EOF:
            raise self.error("empty condition", self.token)
        node = self.or_expr()
        self.expect_end(Kind.EOF)
        return node

    # -- helpers ------------------------------------------------------------------------

    def error(self, message: str, token: Token, hint: str = "") -> ExpressionSyntaxError:
        return ExpressionSyntaxError(
            message, expression=self.source, column=token.start + 1, hint=hint
        )

    def unexpected(self, expected: str) -> ExpressionSyntaxError:
        token = self.token
        if token.kind is Kind.EOF:
            return self.error("unexpected end of expression", token, f"expected {expected}")
        return self.error(f"unexpected {token.describe()}", token, f"expected {expected}")

    def advance(self) -> Token:
        token = self.token
        self.token = self.lexer.next()
        self.check_length()
        return token

    def check_length(self) -> None:
        # Checked token by token: an embedded '@{...}' has no known end before it is parsed.
        if self.token.end - self.origin > MAX_LENGTH:
            raise ExpressionSyntaxError(
                f"expression is longer than {MAX_LENGTH} characters",
                expression=self.source,
                column=self.origin + 1,
                hint="split it into several steps or simpler expressions",
            )

    def expect(self, kind: Kind, expected: str) -> Token:
        if self.token.kind is not kind:
            raise self.unexpected(expected)
        return self.advance()

    def expect_end(self, kind: Kind, *, advance: bool = True) -> Token:
        token = self.token
        if token.kind is kind:
            return self.advance() if advance else token
        if token.kind in (Kind.OP, Kind.NOT) and kind is Kind.RBRACE:
            raise self.error(f"unexpected {token.describe()}", token, _OPERATOR_HINT)
        if token.kind in (Kind.OP, Kind.NOT) and not self.in_condition:
            raise self.error(f"unexpected {token.describe()}", token, _OPERATOR_HINT)
        if kind is Kind.RBRACE and token.kind is Kind.EOF:
            raise self.error("unterminated '@{'", token, "expected '}'")
        raise self.error(f"unexpected {token.describe()}", token)

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression is nested too deeply (limit {MAX_DEPTH})", token)

    # -- conditions ---------------------------------------------------------------------

    def or_expr(self) -> Node:
        return self._bool_run("||", self.and_expr)

    def and_expr(self) -> Node:
        return self._bool_run("&&", self.compare)

    def _bool_run(self, op: str, parse: Callable[[], Node]) -> Node:
        first = parse()
        operands = [first]
        op_starts: list[int] = []
        while self.token.kind is Kind.OP and self.token.text == op:
            op_starts.append(self.advance().start)
            operands.append(parse())
        if len(operands) == 1:
            return first
        return BoolOp(op, tuple(operands), tuple(op_starts), first.start, operands[-1].end)

    def unary(self) -> Node:
        if self.token.kind is Kind.NOT:
            bang = self.advance()
            self.enter(bang)
            operand = self.unary()
            self.depth -= 1
            return Not(operand, bang.start, operand.end)
        return self.operand()

    def compare(self) -> Node:
        left = self.unary()
        if self.token.kind is not Kind.OP or self.token.text not in _COMPARISONS:
            return left
        op = self.advance()
        right = self.unary()
        if self.token.kind is Kind.OP and self.token.text in _COMPARISONS:
            raise self.error(
                f"unexpected {self.token.describe()}",
                self.token,
                "comparisons cannot be chained; combine them with && or ||",
            )
        return Compare(op.text, left, right, op.start, left.start, right.end)

    def operand(self) -> Node:
        token = self.token
        if token.kind is Kind.LPAREN:
            self.advance()
            self.enter(token)
            inner = self.or_expr()
            closing = self.expect(Kind.RPAREN, "')' or an operator")
            self.depth -= 1
            return Group(inner, token.start, closing.end)
        if token.kind is Kind.AT:
            self.advance()
            if self.token.kind in (Kind.AT, Kind.LPAREN, Kind.NOT):
                raise self.unexpected("a function call or literal after '@'")
        return self.value()

    # -- values -------------------------------------------------------------------------

    def value(self) -> Node:
        token = self.token
        if token.kind in (Kind.STRING, Kind.NUMBER):
            self.advance()
            return Literal(token.value, token.start, token.end)
        if token.kind is not Kind.IDENT:
            raise self.unexpected("a function call or literal")
        self.advance()
        if token.text in _KEYWORDS and self.token.kind is not Kind.LPAREN:
            return Literal(_KEYWORDS[token.text], token.start, token.end)
        if self.token.kind is not Kind.LPAREN:
            raise self.error(
                f"unknown name '{token.text}'",
                token,
                "call a function such as triggerBody(), or quote text as 'text'",
            )
        base = self.call(token)
        accesses: list[Access] = []
        while self.token.kind in (Kind.DOT, Kind.QDOT, Kind.LBRACKET, Kind.QBRACKET):
            accesses.append(self.access())
        if isinstance(base, StepRef):
            self.check_step_access(base, accesses)
        if not accesses:
            return base
        return Chain(base, tuple(accesses), base.start, accesses[-1].end)

    def call(self, name: Token) -> Call | StepRef:
        spec = FUNCTIONS.get(name.text)
        if spec is None and name.text != "steps":
            raise self.error(
                f"unknown function '{name.text}'",
                name,
                f"known functions: {', '.join(KNOWN_FUNCTIONS)}",
            )
        self.enter(name)
        self.advance()  # '('
        args: list[Node] = []
        if self.token.kind is not Kind.RPAREN:
            args.append(self.value())
            while self.token.kind is Kind.COMMA:
                self.advance()
                args.append(self.value())
        if self.token.kind is not Kind.RPAREN:
            if self.token.kind in (Kind.OP, Kind.NOT):
                raise self.error(f"unexpected {self.token.describe()}", self.token, _OPERATOR_HINT)
            raise self.unexpected("',' or ')'")
        closing = self.advance()
        self.depth -= 1
        if spec is None:
            if (
                len(args) != 1
                or not isinstance(args[0], Literal)
                or not isinstance(args[0].value, str)
            ):
                raise self.error(
                    "steps() takes exactly one step key as a quoted literal",
                    name,
                    "write it like steps('fetch')",
                )
            return StepRef(args[0].value, name.start, closing.end)
        too_few = len(args) < spec.min_args
        too_many = spec.max_args is not None and len(args) > spec.max_args
        if too_few or too_many:
            if spec.max_args == spec.min_args:
                wanted = f"exactly {spec.min_args}"
            elif spec.max_args is None:
                wanted = f"at least {spec.min_args}"
            else:
                wanted = f"{spec.min_args} to {spec.max_args}"
            plural = "" if wanted.endswith(" 1") else "s"
            raise self.error(
                f"{name.text}() takes {wanted} argument{plural}, got {len(args)}",
                name,
                f"usage: {spec.signature}",
            )
        return Call(name.text, tuple(args), name.start, closing.end)

    def access(self) -> Access:
        token = self.advance()
        optional = token.kind in (Kind.QDOT, Kind.QBRACKET)
        if token.kind in (Kind.DOT, Kind.QDOT):
            name = self.token
            if name.kind is not Kind.IDENT:
                raise self.unexpected(f"a property name after {token.describe()}")
            self.advance()
            return Access(name.text, None, optional, token.start, name.end)
        self.enter(token)
        index = self.value()
        closing = self.expect(Kind.RBRACKET, "']'")
        self.depth -= 1
        return Access(None, index, optional, token.start, closing.end)

    def check_step_access(self, base: StepRef, accesses: list[Access]) -> None:
        if not accesses:
            return
        first = accesses[0]
        field = first.name
        if field is None and isinstance(first.index, Literal):
            field = first.index.value if isinstance(first.index.value, str) else None
        if field not in _STEP_FIELDS:
            raise ExpressionSyntaxError(
                f"steps('{base.key}') has only .output, .status and .error",
                hint="e.g. steps('key').output.field",
                expression=self.source,
                column=first.start + 1,
            )
