"""A step's ``runAfter ... when`` decision: evaluated once, kept as a typed trace.

The stored JSON shape (``steps.when_trace``) is a list with one object per evaluated clause:
``{"predecessor", "expression", "resolved", "result", "error"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from floworch.expressions import ExpressionContext, WhenTrace
from floworch.model import StepNode


@dataclass(frozen=True)
class ClauseTrace:
    """The evaluation of the ``when`` clause of one ``runAfter`` predecessor."""

    predecessor: str
    trace: WhenTrace

    def to_json(self) -> dict[str, Any]:
        """The stored form of this clause's evaluation."""
        return {"predecessor": self.predecessor, **self.trace.to_dict()}


@dataclass(frozen=True)
class StepWhenTrace:
    """Why a step ran or was skipped: its ``when`` clauses in evaluation order.

    Evaluation stops at the first false clause, so only the last clause can be false.
    """

    clauses: tuple[ClauseTrace, ...]

    @property
    def passed(self) -> bool:
        """Whether every clause held (the step runs)."""
        return all(clause.trace.result for clause in self.clauses)

    @property
    def skip_reason(self) -> str | None:
        """Why the step is skipped, or None when it runs."""
        for clause in self.clauses:
            if clause.trace.result:
                continue
            if clause.trace.error:
                return f"when clause of runAfter.{clause.predecessor} failed: {clause.trace.error}"
            return f"when clause of runAfter.{clause.predecessor} is false"
        return None

    def to_json(self) -> list[dict[str, Any]]:
        """The stored form (``steps.when_trace``)."""
        return [clause.to_json() for clause in self.clauses]

    @classmethod
    def from_json(cls, value: Any) -> StepWhenTrace | None:
        """Reads a stored trace back; None for None or a value of another shape."""
        if not isinstance(value, list):
            return None
        clauses: list[ClauseTrace] = []
        for item in value:
            if not isinstance(item, Mapping):
                return None
            error = item.get("error")
            clauses.append(
                ClauseTrace(
                    str(item.get("predecessor", "")),
                    WhenTrace(
                        expression=str(item.get("expression", "")),
                        resolved=str(item.get("resolved", "")),
                        result=item.get("result") is True,
                        error=None if error is None else str(error),
                    ),
                )
            )
        return cls(tuple(clauses))


def evaluate_when(node: StepNode, ctx: ExpressionContext) -> StepWhenTrace | None:
    """Evaluates the step's ``when`` clauses in ``runAfter`` order, stopping at the first false
    one; None for a step that has none."""
    clauses: list[ClauseTrace] = []
    for pred, rule in node.predecessors.items():
        if rule.when is None:
            continue
        trace = rule.when.evaluate(ctx)
        clauses.append(ClauseTrace(pred, trace))
        if not trace.result:
            break
    return StepWhenTrace(tuple(clauses)) if clauses else None


def when_json(trace: StepWhenTrace | None) -> list[dict[str, Any]] | None:
    """The stored form of an optional trace."""
    return trace.to_json() if trace is not None else None


__all__ = ["ClauseTrace", "StepWhenTrace", "evaluate_when", "when_json"]
