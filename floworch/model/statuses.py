"""Status enums shared by the manifest, the compiled graph and the engine."""

from __future__ import annotations

from enum import StrEnum


class StepStatus(StrEnum):
    """The lifecycle status of one step instance in a run.

    ``Pending``, ``Running`` and ``Waiting`` are transient; the rest are terminal. ``Waiting``
    covers steps parked on something outside the worker: a signal, a delay or a poll interval.
    """

    PENDING = "Pending"
    RUNNING = "Running"
    WAITING = "Waiting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the step will not change status again (barring a manual retry)."""
        return self in TERMINAL_STEP_STATUSES


class RunStatus(StrEnum):
    """The status of a whole run. ``Skipped`` means every leaf step was skipped."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMED_OUT = "TimedOut"
    SKIPPED = "Skipped"

    @property
    def is_terminal(self) -> bool:
        """Whether the run has finished."""
        return self is not RunStatus.RUNNING


TERMINAL_STEP_STATUSES: frozenset[StepStatus] = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.SKIPPED,
        StepStatus.TIMED_OUT,
        StepStatus.CANCELLED,
    }
)
"""The statuses a ``runAfter`` rule may name; an empty rule accepts any of them."""
