"""How runs are printed: summary lines, step tables with attempts, and the ``--json`` shape.

A run *succeeds* when every failure in it was handled: a failed (or timed-out) step is handled
when a step that runs after it succeeded (a ``runAfter`` on ``Failed``). Users read
"Succeeded" as "nothing failed", so the summary says how many failures were handled, e.g.
``Succeeded (2 failures handled)``, and ``--json`` lists them under ``handledFailures``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from floworch.engine.views import RunState
    from floworch.model import FlowDefinition
    from floworch.storage.records import AttemptRecord

_FAILURES = ("Failed", "TimedOut")


def handled_failures(
    statuses: Mapping[str, str], run_status: str, flow: FlowDefinition | None = None
) -> list[str]:
    """The failed or timed-out step instances whose failure was handled.

    With the flow, a top-level step's failure is handled when one of its successors succeeded
    (the engine's rule). Without it (``runs list``), every failure of a run that did not fail
    was handled, since an unhandled one fails the run. A failure inside a ForEach body counts as
    handled when every loop around it succeeded.
    """
    failed = [key for key, status in statuses.items() if status in _FAILURES]
    handled: list[str] = []
    for key in failed:
        if "." in key:
            if all(statuses.get(loop) == "Succeeded" for loop in _enclosing_loops(key)):
                handled.append(key)
            continue
        if flow is None:
            if run_status != "Failed":
                handled.append(key)
            continue
        node = flow.root.steps.get(key)
        if node is not None and any(statuses.get(s) == "Succeeded" for s in node.successors):
            handled.append(key)
    return handled


def _enclosing_loops(key: str) -> list[str]:
    """``each.3.inner.1.charge`` -> ``["each", "each.3.inner"]``."""
    from floworch.model.instance_key import InstanceKey  # floworch.model loads pydantic

    return [str(loop) for loop in reversed(InstanceKey.parse(key).enclosing_loops())]


def status_text(status: str, handled: Sequence[str]) -> str:
    """``Succeeded``, or ``Succeeded (2 failures handled)``."""
    if not handled:
        return status
    noun = "failure" if len(handled) == 1 else "failures"
    return f"{status} ({len(handled)} {noun} handled)"


def run_handled(run: RunState, flow: FlowDefinition | None) -> list[str]:
    """:func:`handled_failures` of a run."""
    statuses = {key: str(step.status) for key, step in run.steps.items()}
    return handled_failures(statuses, str(run.status), flow)


def summary(run: RunState, flow: FlowDefinition | None = None) -> str:
    """The closing line of ``floworch run`` and ``resume`` for one run."""
    counts: dict[str, int] = {}
    for step in run.steps.values():
        counts[str(step.status)] = counts.get(str(step.status), 0) + 1
    detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    text = status_text(str(run.status), run_handled(run, flow))
    return f"run {run.run_id} of {run.flow_id}: {text} (steps: {detail})"


def failure_lines(run: RunState, flow: FlowDefinition | None = None) -> list[str]:
    """One line per failed step: its error type and message (the traceback is in runs show)."""
    handled = set(run_handled(run, flow))
    lines = []
    for key, step in run.steps.items():
        if str(step.status) not in _FAILURES or not isinstance(step.error, dict):
            continue
        mark = " (handled)" if key in handled else ""
        lines.append(f"  {key}{mark}: {error_line(step.error)}")
    return lines


def error_line(error: Any) -> str:
    """``ValueError: kaput`` from a stored error."""
    if not isinstance(error, dict):
        return str(error)
    kind = error.get("type")
    message = str(error.get("message", "")).strip().splitlines()
    text = message[0] if message else ""
    return f"{kind}: {text}" if kind else text


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_to_json(
    run: RunState,
    flow: FlowDefinition | None,
    attempts: Sequence[AttemptRecord] = (),
) -> dict[str, Any]:
    """The shape of ``floworch run --json`` and ``floworch runs show --json``.

    ``RunState.to_dict()`` plus: ``createdAt``/``completedAt`` of the run, ``handledFailures``,
    and per step ``startedAt``, ``completedAt`` and ``history`` (every finished handler attempt
    with its times, status, and error).
    """
    data = run.to_dict()
    data["createdAt"] = _iso(run.created_at)
    data["completedAt"] = _iso(run.completed_at)
    data["handledFailures"] = run_handled(run, flow)
    by_step: dict[str, list[AttemptRecord]] = {}
    for attempt in attempts:
        by_step.setdefault(attempt.step_key, []).append(attempt)
    for key, step in run.steps.items():
        entry = data["steps"][key]
        entry["startedAt"] = _iso(step.started_at)
        entry["completedAt"] = _iso(step.completed_at)
        entry["history"] = [
            {
                "attempt": a.attempt,
                "status": str(a.status),
                "startedAt": _iso(a.started_at),
                "completedAt": _iso(a.completed_at),
                "error": a.error,
            }
            for a in sorted(by_step.get(key, []), key=lambda a: (a.attempt, a.seq))
        ]
    return data


def _clock(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if value is not None else "-"


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    return f" ({seconds:.3f}s)" if seconds < 60 else f" ({seconds / 60:.1f}min)"


def show_lines(
    run: RunState,
    flow: FlowDefinition | None,
    attempts: Sequence[AttemptRecord] = (),
    *,
    tracebacks: bool = True,
) -> list[str]:
    """``floworch runs show``: the run, each step with its times, every attempt's outcome, and
    the traceback of each failed step's last error."""
    handled = run_handled(run, flow)
    when = f"  created {run.created_at:%Y-%m-%d} {_clock(run.created_at)} UTC"
    if run.completed_at is not None:
        when += f", ended {_clock(run.completed_at)}{_took(run.created_at, run.completed_at)}"
    lines = [f"run {run.run_id} of {run.flow_id}: {status_text(str(run.status), handled)}", when]
    if run.source_run_id:
        lines.append(f"  rerun of {run.source_run_id}")
    by_step: dict[str, list[AttemptRecord]] = {}
    for attempt in attempts:
        by_step.setdefault(attempt.step_key, []).append(attempt)
    for key, step in run.steps.items():
        times = f"{_clock(step.started_at)} -> {_clock(step.completed_at)}"
        took = _took(step.started_at, step.completed_at)
        extra = ""
        if step.error:
            extra = f"  error: {error_line(step.error)}"
        elif step.skip_reason:
            extra = f"  ({step.skip_reason})"
        lines.append(
            f"  {key:<24} {step.status!s:<10} attempts={step.attempts} {times}{took}{extra}"
        )
        history = sorted(by_step.get(key, []), key=lambda a: (a.attempt, a.seq))
        if len(history) > 1 or (history and history[-1].error and not step.error):
            for a in history:
                outcome = f"  {error_line(a.error)}" if a.error else ""
                lines.append(
                    f"      attempt {a.attempt}: {a.status!s:<9} {_clock(a.started_at)} -> "
                    f"{_clock(a.completed_at)}{_took(a.started_at, a.completed_at)}{outcome}"
                )
        if tracebacks and isinstance(step.error, dict) and step.error.get("traceback"):
            lines.append("      traceback (most recent call last):")
            for line in str(step.error["traceback"]).splitlines():
                if line.startswith("Traceback (most recent call last)"):
                    continue
                lines.append(f"      | {line}")
    return lines
