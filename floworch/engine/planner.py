"""Pure decisions over a scope's graph: is a step ready, skipped, or still blocked, and how a
finished scope (the run, or one ForEach iteration) ends. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from floworch.model import Scope, StepNode
from floworch.model.statuses import RunStatus, StepStatus

_FAILURES = (StepStatus.FAILED, StepStatus.TIMED_OUT)


class Verdict(StrEnum):
    """What the planner decided about a step whose predecessors changed."""

    READY = "ready"
    """Every predecessor ended in a status its rule accepts: dispatch the step."""
    SKIP = "skip"
    """Every predecessor is terminal but some rule is not met: the step is Skipped."""
    BLOCKED = "blocked"
    """Some predecessor has not finished yet."""


@dataclass(frozen=True)
class Readiness:
    """The verdict on one step, with the reason for a skip."""

    verdict: Verdict
    reason: str | None = None


BLOCKED = Readiness(Verdict.BLOCKED)
READY = Readiness(Verdict.READY)


def readiness(node: StepNode, statuses: Mapping[str, StepStatus | None]) -> Readiness:
    """Decides a step from its predecessors' statuses (None = no row or not terminal yet).

    Every predecessor must be terminal (AND-join); then the step is ready when each one ended in a
    status its rule accepts (an empty rule accepts any), and skipped otherwise.
    """
    unmet: list[str] = []
    for pred, rule in node.predecessors.items():
        status = statuses.get(pred)
        if status is None or not StepStatus(status).is_terminal:
            return BLOCKED
        if not rule.accepts(StepStatus(status)):
            wanted = ", ".join(sorted(rule.statuses)) or "any"
            unmet.append(f"'{pred}' is {status} (runAfter needs {wanted})")
    if unmet:
        return Readiness(Verdict.SKIP, "; ".join(unmet))
    return READY


def scope_status(scope: Scope, statuses: Mapping[str, StepStatus]) -> tuple[RunStatus, list[str]]:
    """How a finished scope ends, and which failed steps nobody handled.

    A failure is handled when a step that ran after it succeeded. Any unhandled failure fails the
    scope; a scope whose every leaf was skipped is Skipped; otherwise it succeeded.
    """
    unhandled: list[str] = []
    for key, status in statuses.items():
        if status not in _FAILURES:
            continue
        node = scope.steps.get(key)
        if node is not None and any(
            statuses.get(succ) == StepStatus.SUCCEEDED for succ in node.successors
        ):
            continue
        unhandled.append(key)
    if unhandled:
        return RunStatus.FAILED, sorted(unhandled)
    if any(status == StepStatus.CANCELLED for status in statuses.values()):
        return RunStatus.CANCELLED, []
    if scope.leaves and all(statuses.get(leaf) == StepStatus.SKIPPED for leaf in scope.leaves):
        return RunStatus.SKIPPED, []
    return RunStatus.SUCCEEDED, []


def iteration_output(scope: Scope, outputs: Mapping[str, object]) -> object:
    """The output of one ForEach iteration: its single leaf's output, or {leaf: output}."""
    if len(scope.leaves) == 1:
        return outputs.get(scope.leaves[0])
    return {leaf: outputs.get(leaf) for leaf in scope.leaves}
