"""Live progress of a run on a terminal: one line per step status change."""

from __future__ import annotations

import asyncio
from typing import TextIO

from floworch.engine.engine import Engine
from floworch.engine.views import RunState

_MARKS = {
    "Succeeded": "ok ",
    "Failed": "ERR",
    "TimedOut": "T/O",
    "Skipped": "-- ",
    "Cancelled": "XX ",
    "Waiting": "...",
    "Running": ">> ",
    "Pending": "   ",
}


def describe_step(key: str, status: str, detail: str = "") -> str:
    """One progress line."""
    mark = _MARKS.get(status, "   ")
    return f"  [{mark}] {key:<30} {status}{('  ' + detail) if detail else ''}"


async def follow(engine: Engine, run_id: str, out: TextIO, *, interval: float = 0.1) -> RunState:
    """Prints step changes until the run ends; returns the final run."""
    seen: dict[str, str] = {}
    hinted: set[str] = set()
    while True:
        run = await engine.get_run(run_id)
        for key, step in run.steps.items():
            status = str(step.status)
            if seen.get(key) == status:
                continue
            seen[key] = status
            detail = ""
            if step.error and isinstance(step.error, dict):
                detail = str(step.error.get("message", ""))[:120]
            elif step.skip_reason:
                detail = step.skip_reason[:120]
            out.write(describe_step(key, status, detail) + "\n")
            if status == "Waiting" and step.type == "WaitForSignal" and key not in hinted:
                hinted.add(key)
                name = (
                    (step.inputs or {}).get("signalName", "?")
                    if isinstance(step.inputs, dict)
                    else "?"
                )
                out.write(
                    f"        waiting for signal {name!r}; deliver it with:\n"
                    f"        floworch signal {run_id} {name} --payload '{{...}}' [--db URL]\n"
                )
            out.flush()
        if run.done:
            return run
        await asyncio.sleep(interval)
