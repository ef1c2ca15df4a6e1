"""Logic-Apps-style expressions for floworch manifests: values and When clauses.

Values: ``"@triggerBody()?.order.id"`` (whole-value expression keeping its JSON type),
``"Order @{triggerBody()?.id} shipped"`` (string interpolation), and dicts/lists holding
such strings. Conditions: ``"@steps('approve').output.approved == true"``.

Everything is parsed once at compile time; resolving runs pre-built closures. See
``docs/expressions.md`` for the language reference.
"""

from .conditions import CompiledCondition, WhenTrace, compile_condition
from .context import CaseInsensitiveHeaders, ExpressionContext, StepView
from .errors import ExpressionError, ExpressionEvaluationError, ExpressionSyntaxError
from .functions import KNOWN_FUNCTIONS, format_timestamp
from .memory_context import InMemoryContext
from .values import CompiledValue, compile_value, compile_value_errors, is_expression

__all__ = [
    "KNOWN_FUNCTIONS",
    "CaseInsensitiveHeaders",
    "CompiledCondition",
    "CompiledValue",
    "ExpressionContext",
    "ExpressionError",
    "ExpressionEvaluationError",
    "ExpressionSyntaxError",
    "InMemoryContext",
    "StepView",
    "WhenTrace",
    "compile_condition",
    "compile_value",
    "compile_value_errors",
    "format_timestamp",
    "is_expression",
]
