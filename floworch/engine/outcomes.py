"""What running a step produced, as the engine records it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from floworch.model.statuses import StepStatus


@dataclass(frozen=True)
class StepOutcome:
    """The result of one execution of a step, before it is persisted.

    ``status`` is terminal, or WAITING for a step that parks (poll, delay, signal, a ForEach
    waiting for its iterations). ``wake_at`` schedules the next dispatch of a parked step.
    ``signal`` asks the completion transaction to register a signal waiter (WaitForSignal).
    """

    status: StepStatus
    output: Any = None
    error: dict[str, Any] | None = None
    retryable: bool = False
    inputs: Any = None
    when_trace: list[dict[str, Any]] | None = None
    skip_reason: str | None = None
    wake_at: datetime | None = None
    state: Any = None
    ran_handler: bool = False
    signal: tuple[str, datetime | None] | None = None
    new_children: list[str] = field(default_factory=list)


def failed(message: str, *, error_type: str = "StepError", retryable: bool = False) -> StepOutcome:
    """A failure the engine itself detected (bad inputs, unknown handler, bad items)."""
    return StepOutcome(
        StepStatus.FAILED, error={"type": error_type, "message": message}, retryable=retryable
    )
