"""Durations computed at run time (from expressions or handler results), checked before use.

Validation bounds the durations written in a manifest; these come from resolved inputs
(``delaySeconds``, ``timeoutSeconds``) or from ``StepResult.pending(delay=...)``. One that is
not a number, negative, NaN, longer than :data:`floworch.limits.MAX_DURATION`, or that would
move a time past the calendar's end fails the step (``InvalidDuration``) instead of raising
OverflowError or ValueError out of the engine.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from floworch import limits


class DurationError(ValueError):
    """A run-time duration is out of range; the message says which and why."""


def seconds_input(value: Any, what: str) -> timedelta:
    """A duration given as a number of seconds (a numeric string is accepted too).

    Raises:
        DurationError: not a number, NaN or infinite, negative, or too long.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DurationError(f"{what} must be a number of seconds, not {type(value).__name__}")
    try:
        seconds = float(value)
    except ValueError:
        raise DurationError(f"{what} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise DurationError(f"{what} must be a finite number of seconds >= 0, not {value!r}")
    if problem := limits.duration_problem(seconds):
        raise DurationError(f"{what} is {seconds:g} seconds; it {problem}")
    return timedelta(seconds=seconds)


def checked(delay: timedelta, what: str) -> timedelta:
    """``delay`` when it is at most :data:`floworch.limits.MAX_DURATION`.

    Raises:
        DurationError: it is longer.
    """
    if delay > limits.MAX_DURATION:
        raise DurationError(
            f"{what} is {delay}; it must be at most {limits.MAX_DURATION.days} days"
        )
    return delay


def after(now: datetime, delay: timedelta, what: str) -> datetime:
    """``now + delay``.

    Raises:
        DurationError: the result would be past the year 9999.
    """
    try:
        return now + delay
    except OverflowError:
        raise DurationError(f"{what} of {delay} ends past the year 9999") from None


__all__ = ["DurationError", "after", "checked", "seconds_input"]
