"""What running a step produced, as the engine records it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from floworch.engine.step_errors import ErrorInfo, ErrorType
from floworch.engine.when import StepWhenTrace
from floworch.model.statuses import StepStatus


class HandlerResultKind(StrEnum):
    """How one handler attempt ended."""

    SUCCEEDED = "succeeded"
    PENDING = "pending"
    """The handler asked to be called again later (``StepResult.pending``)."""
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def step_status(self) -> StepStatus:
        """The step status an attempt that ended this way leads to (PENDING: Waiting)."""
        return _KIND_STATUS[self]


_KIND_STATUS = {
    HandlerResultKind.SUCCEEDED: StepStatus.SUCCEEDED,
    HandlerResultKind.PENDING: StepStatus.WAITING,
    HandlerResultKind.FAILED: StepStatus.FAILED,
    HandlerResultKind.TIMED_OUT: StepStatus.TIMED_OUT,
    HandlerResultKind.CANCELLED: StepStatus.CANCELLED,
}


@dataclass(frozen=True)
class StepOutcome:
    """The result of one execution of a step, before it is persisted.

    ``status`` is terminal, or WAITING for a step that parks (poll, delay, signal, a ForEach
    waiting for its iterations). ``wake_at`` schedules the next dispatch of a parked step.
    ``signal`` asks the completion transaction to register a signal waiter (WaitForSignal).
    ``loop_items`` are a starting ForEach's items: stored in their own rows, once, so the
    ForEach's ``state`` holds only its counters.
    """

    status: StepStatus
    output: Any = None
    error: ErrorInfo | None = None
    retryable: bool = False
    inputs: Any = None
    when_trace: StepWhenTrace | None = None
    skip_reason: str | None = None
    wake_at: datetime | None = None
    state: Any = None
    ran_handler: bool = False
    signal: tuple[str, datetime | None] | None = None
    new_children: list[int] = field(default_factory=list)
    loop_items: list[Any] | None = None


def failed(
    message: str, *, error_type: str = ErrorType.STEP_ERROR, retryable: bool = False
) -> StepOutcome:
    """A failure the engine itself detected (bad inputs, unknown handler, bad items)."""
    return StepOutcome(StepStatus.FAILED, error=ErrorInfo(error_type, message), retryable=retryable)
