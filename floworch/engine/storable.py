"""What the store can keep: every step outcome is checked here before it reaches the store.

An outcome the store cannot keep (an output with a set, bytes or NaN, one too large or nested
too deeply) is a failure of the step, decided by the engine and recorded once: never a
``StorageError``, which would mean "retry later" and run the handler again and again. Text that
goes to plain text columns (skip reasons, event messages) loses NUL characters, which PostgreSQL
refuses in text; inside JSON values NUL is escaped (``\\u0000``) and stored as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from floworch import limits
from floworch.engine.outcomes import StepOutcome
from floworch.engine.step_errors import ErrorInfo, ErrorType
from floworch.engine.when import ClauseTrace, StepWhenTrace
from floworch.model.statuses import StepStatus

_NUL = "\x00"
_NUL_SHOWN = "\\x00"


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as a JSON value by every store, or None when it can.

    Strict JSON (no NaN or Infinity), at most :data:`~floworch.limits.MAX_STORED_JSON_NESTING`
    levels deep and :data:`~floworch.limits.MAX_STORED_JSON_BYTES` bytes long.
    """
    if value is None or isinstance(value, bool | int | str):
        return _size_problem(value) if isinstance(value, str) else None
    depth = _depth(value)
    if depth > limits.MAX_STORED_JSON_NESTING:
        return (
            f"it is nested {depth} levels deep; the limit is {limits.MAX_STORED_JSON_NESTING}"
            if depth < _DEPTH_PROBE_LIMIT
            else f"it is nested more than {limits.MAX_STORED_JSON_NESTING} levels deep"
        )
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except ValueError as exc:
        if "Out of range float" in str(exc):
            return "it contains NaN or Infinity, which JSON cannot represent"
        return str(exc)
    except TypeError as exc:
        return f"{exc} (only JSON values can be stored: dict, list, str, int, float, bool, None)"
    except RecursionError:
        return "it is nested too deeply to encode"
    return _size_problem(text)


_DEPTH_PROBE_LIMIT = 10_000


def _depth(value: Any) -> int:
    """Nesting depth of containers, counted without recursion (stops past a probe limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, Mapping):
            children: Any = current.values()
        elif isinstance(current, list | tuple):
            children = current
        else:
            continue
        deepest = max(deepest, level)
        if deepest >= _DEPTH_PROBE_LIMIT:
            return deepest
        stack.extend(
            (child, level + 1) for child in children if isinstance(child, Mapping | list | tuple)
        )
    return deepest


def _size_problem(text: str) -> str | None:
    limit = limits.MAX_STORED_JSON_BYTES
    if len(text) * 4 <= limit:  # a character is at most four bytes of UTF-8
        return None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        return f"it is {size} bytes as JSON; the limit is {limit}"
    return None


def clean_text(text: str, limit: int = limits.MAX_ERROR_MESSAGE_LENGTH) -> str:
    """``text`` fit for a text column: NUL shown as ``\\x00``, at most ``limit`` characters."""
    if _NUL in text:
        text = text.replace(_NUL, _NUL_SHOWN)
    if len(text) > limit:
        text = text[: limit - 40] + f"... ({len(text) - limit + 40} more characters cut)"
    return text


def storable_error(error: ErrorInfo | None) -> ErrorInfo | None:
    """The error with its message and traceback cut to size and unstorable details replaced."""
    if error is None:
        return None
    message = clean_text(error.message)
    trace = error.traceback
    if trace is not None:
        trace = trace.replace(_NUL, _NUL_SHOWN)
        if len(trace) > limits.MAX_TRACEBACK_LENGTH:
            trace = "... (start cut)\n" + trace[-(limits.MAX_TRACEBACK_LENGTH - 16) :]
    extra = error.extra
    if extra and (problem := json_problem(dict(extra))) is not None:
        shown = clean_text(repr(dict(extra)))
        extra = MappingProxyType({"details": f"(not storable: {problem}) {shown}"})
    if (message, trace, extra) == (error.message, error.traceback, error.extra):
        return error
    return replace(error, message=message, traceback=trace, extra=extra)


def _storable_trace(trace: StepWhenTrace | None) -> StepWhenTrace | None:
    if trace is None or json_problem(trace.to_json()) is None:
        return trace
    clauses = tuple(
        ClauseTrace(
            c.predecessor,
            replace(
                c.trace,
                expression=clean_text(c.trace.expression),
                resolved=clean_text(c.trace.resolved),
                error=clean_text(c.trace.error) if c.trace.error else None,
            ),
        )
        for c in trace.clauses
    )
    return StepWhenTrace(clauses)


def storable_outcome(outcome: StepOutcome, step_key: str) -> StepOutcome:
    """``outcome`` as the store can keep it.

    An output, resolved inputs, a state or a ForEach's items that cannot be stored turns the
    outcome into a failure of type ``OutputNotStorable``, not retried: the handler (which may
    have had side effects) is not run again for a value it will return again.
    """
    for value, what in (
        (outcome.output, "an output"),
        (outcome.state, "a state"),
        (outcome.loop_items, "ForEach items"),
        (outcome.inputs, "resolved inputs"),
    ):
        problem = json_problem(value)
        if problem is not None:
            return _not_storable(outcome, step_key, what, problem)
    error = storable_error(outcome.error)
    skip = clean_text(outcome.skip_reason) if outcome.skip_reason else outcome.skip_reason
    trace = _storable_trace(outcome.when_trace)
    if (error, skip, trace) == (outcome.error, outcome.skip_reason, outcome.when_trace):
        return outcome
    return replace(outcome, error=error, skip_reason=skip, when_trace=trace)


def _not_storable(outcome: StepOutcome, step_key: str, what: str, problem: str) -> StepOutcome:
    message = clean_text(
        f"step {step_key!r} produced {what} that cannot be stored: {problem}. Return JSON values "
        f"only (no NaN or Infinity, sets or bytes), at most {limits.MAX_STORED_JSON_BYTES} "
        f"bytes and {limits.MAX_STORED_JSON_NESTING} levels deep"
    )
    inputs = outcome.inputs if json_problem(outcome.inputs) is None else None
    return StepOutcome(
        StepStatus.FAILED,
        error=ErrorInfo(ErrorType.OUTPUT_NOT_STORABLE, message),
        retryable=False,
        inputs=inputs,
        when_trace=_storable_trace(outcome.when_trace),
        ran_handler=outcome.ran_handler,
    )


__all__ = ["clean_text", "json_problem", "storable_error", "storable_outcome"]
