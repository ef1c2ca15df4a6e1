"""Read models of a run for the CLI, the test host and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.records import RunRecord, StepRecord


@dataclass(frozen=True)
class StepState:
    """One step of a run as a reader sees it."""

    key: str
    type: str
    status: StepStatus
    output: Any
    error: Any
    attempts: int
    started_at: datetime | None
    completed_at: datetime | None
    skip_reason: str | None
    when_trace: Any
    inputs: Any

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``floworch run --json`` for one step."""
        data: dict[str, Any] = {
            "status": str(self.status),
            "output": self.output,
            "error": self.error,
            "attempts": self.attempts,
        }
        if self.skip_reason:
            data["skipReason"] = self.skip_reason
        if self.when_trace:
            data["whenTrace"] = self.when_trace
        return data


@dataclass(frozen=True)
class RunState:
    """A run with its steps."""

    run_id: str
    flow_id: str
    status: RunStatus
    created_at: datetime
    completed_at: datetime | None
    trigger_key: str
    source_run_id: str | None
    steps: Mapping[str, StepState] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether the run reached a terminal status."""
        return RunStatus(self.status).is_terminal

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``floworch run --json`` and ``floworch runs show --json``."""
        data: dict[str, Any] = {
            "runId": self.run_id,
            "flowId": self.flow_id,
            "status": str(self.status),
            "steps": {key: step.to_dict() for key, step in self.steps.items()},
        }
        if self.source_run_id:
            data["sourceRunId"] = self.source_run_id
        return data


def attempts_of(step: StepRecord) -> int:
    """Handler attempts so far: the attempt number, or 0 for a step that never ran."""
    if step.status == StepStatus.SKIPPED or (
        step.status == StepStatus.PENDING and step.started_at is None
    ):
        return 0
    return step.attempt


def build_run_state(run: RunRecord, steps: list[StepRecord]) -> RunState:
    """Combines a run and its step rows."""
    return RunState(
        run_id=run.run_id,
        flow_id=run.flow_id,
        status=RunStatus(run.status),
        created_at=run.created_at,
        completed_at=run.completed_at,
        trigger_key=run.trigger_key,
        source_run_id=run.source_run_id,
        steps={
            s.step_key: StepState(
                key=s.step_key,
                type=s.step_type,
                status=StepStatus(s.status),
                output=s.output,
                error=s.error,
                attempts=attempts_of(s),
                started_at=s.started_at,
                completed_at=s.completed_at,
                skip_reason=s.skip_reason,
                when_trace=s.when_trace,
                inputs=s.inputs,
            )
            for s in steps
        },
    )
