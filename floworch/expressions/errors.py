"""Exceptions raised by the expression language: the expression subtree of ``FlowError``."""

from __future__ import annotations

from floworch.errors import FlowError


class ExpressionError(FlowError):
    """Base class of every error the expression language raises.

    Attributes:
        expression: The expression text the error belongs to ("" when not yet known).
        message: The message without any location suffix.
    """

    def __init__(self, message: str, *, expression: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression

    def __str__(self) -> str:
        return self.message


class ExpressionSyntaxError(ExpressionError):
    """An expression could not be compiled.

    ``str(error)`` reads like ``"unexpected ')' at column 14"``, followed by ``"; "`` and a
    hint on what to do when there is one.

    Attributes:
        column: 1-based column within ``expression`` where the problem starts.
        hint: What to do about it (e.g. the list of known functions), or "".
    """

    def __init__(self, message: str, *, expression: str, column: int, hint: str = "") -> None:
        super().__init__(message, expression=expression)
        self.column = column
        self.hint = hint

    def __str__(self) -> str:
        where = f"{self.message} at column {self.column}"
        return f"{where}; {self.hint}" if self.hint else where

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_syntax_error, (self.message, self.expression, self.column, self.hint))

    def pointer(self) -> str:
        """Return the expression with a caret line under the offending column."""
        return f"{self.expression}\n{' ' * (self.column - 1)}^"


def _rebuild_syntax_error(
    message: str, expression: str, column: int, hint: str
) -> ExpressionSyntaxError:
    return ExpressionSyntaxError(message, expression=expression, column=column, hint=hint)


class ExpressionEvaluationError(ExpressionError):
    """An expression compiled but failed while being evaluated against a context.

    Raised for a missing step, a property or index that is absent without ``?.``/``?[``,
    and type errors in functions or navigation. The message names the path, for example
    ``"triggerBody().order.id: 'order' is null; use ?. to allow null"``.

    Attributes:
        value_path: Where the failing expression sits inside a compiled value, e.g.
            ``"order.items[2]"`` (``""`` for a top-level string; None when not from a value).
    """

    def __init__(
        self, message: str, *, expression: str = "", value_path: str | None = None
    ) -> None:
        super().__init__(message, expression=expression)
        self.value_path = value_path

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_evaluation_error, (self.message, self.expression, self.value_path))


def _rebuild_evaluation_error(
    message: str, expression: str, value_path: str | None
) -> ExpressionEvaluationError:
    return ExpressionEvaluationError(message, expression=expression, value_path=value_path)
