"""The error of a failed step: a typed value, stored as ``{"type", "message", ...}`` JSON.

``type`` is what a retry policy's ``retryOn`` matches: the class name of the exception a handler
raised (``ConnectionError``), or one of the names floworch itself uses, listed in
:class:`ErrorType`.
"""

from __future__ import annotations

import traceback as tb
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class ErrorType(StrEnum):
    """The error types floworch records itself (documented in docs/manifest.md)."""

    STEP_ERROR = "StepError"
    """A failure the engine detected in a step's definition or inputs (generic)."""
    EXPRESSION_ERROR = "ExpressionError"
    """An input or ``forEach`` expression could not be resolved."""
    INPUT_VALIDATION_ERROR = "InputValidationError"
    """The inputs did not match the handler's pydantic model."""
    HANDLER_NOT_FOUND = "HandlerNotFoundError"
    """No handler is registered for the step type."""
    STEP_TIMEOUT = "StepTimeoutError"
    """An attempt ran longer than ``timeoutSeconds``."""
    STEP_CANCELLED = "StepCancelledError"
    """The attempt was cancelled while it ran (run cancelled, lease lost)."""
    POLL_TIMEOUT = "PollTimeout"
    """Polling gave up (the poll policy's ``timeoutSeconds``)."""
    SIGNAL_TIMEOUT = "SignalTimeout"
    """No signal arrived before a WaitForSignal step's ``timeoutSeconds``."""
    FOR_EACH_ITEMS = "ForEachItemsError"
    """``forEach`` did not resolve to a list."""
    FOR_EACH_FAILED = "ForEachFailed"
    """Some iterations of a ForEach failed (``items`` lists them)."""
    OUTPUT_NOT_STORABLE = "OutputNotStorable"
    """The step's output, resolved inputs or ForEach items cannot be stored (not JSON, NaN or
    Infinity, too large, nested too deeply). Not retried."""
    INVALID_DURATION = "InvalidDuration"
    """A delay, timeout or poll interval computed at run time is not a number of seconds
    between 0 and the longest duration floworch allows. Not retried."""
    RUN_CANCELLED = "RunCancelled"
    """The run was cancelled; open steps end Cancelled with this error."""
    RUN_TIMED_OUT = "RunTimedOut"
    """The run passed its ``timeoutSeconds``."""
    RUN_NOT_ACTIVE = "RunNotActive"
    """A message arrived for a run that had already ended."""


_CORE_KEYS = frozenset({"type", "message", "traceback"})


@dataclass(frozen=True)
class ErrorInfo:
    """Why a step failed.

    Attributes:
        type: the error type (an exception class name, or an :class:`ErrorType`).
        message: what went wrong, in one line where possible.
        traceback: the formatted traceback of a handler's exception, if any.
        extra: further JSON fields stored beside these (``details`` of a ``StepError``,
            ``items`` of a ``ForEachFailed``).
    """

    type: str
    message: str
    traceback: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, error_type: str, message: str, **extra: Any) -> ErrorInfo:
        """An error with extra JSON fields given as keywords."""
        return cls(error_type, message, extra=MappingProxyType(extra))

    @classmethod
    def from_exception(cls, exc: BaseException, *, with_traceback: bool = True) -> ErrorInfo:
        """The error of an exception: its class name, message, traceback and ``details``."""
        extra: dict[str, Any] = {}
        details = getattr(exc, "details", None)
        if details is not None:
            extra["details"] = details
        trace = "".join(tb.format_exception(exc)).rstrip() if with_traceback else None
        return cls(type(exc).__name__, str(exc), trace, MappingProxyType(extra))

    @classmethod
    def from_json(cls, value: Any) -> ErrorInfo | None:
        """Reads the stored JSON form back (None for None; a bare value becomes its message)."""
        if value is None:
            return None
        if not isinstance(value, Mapping):
            return cls(ErrorType.STEP_ERROR, str(value))
        trace = value.get("traceback")
        return cls(
            str(value.get("type", ErrorType.STEP_ERROR)),
            str(value.get("message", "")),
            trace if isinstance(trace, str) else None,
            MappingProxyType({k: v for k, v in value.items() if k not in _CORE_KEYS}),
        )

    def to_json(self) -> dict[str, Any]:
        """The stored JSON form: ``{"type", "message", "traceback"?, ...extra}``."""
        data: dict[str, Any] = {"type": str(self.type), "message": self.message}
        if self.traceback is not None:
            data["traceback"] = self.traceback
        data.update(self.extra)
        return data


def error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    """The stored form of an optional error."""
    return error.to_json() if error is not None else None


__all__ = ["ErrorInfo", "ErrorType", "error_json"]
