"""Following runs while this process executes them: step changes on a terminal, and, on any
output, a notice when a run waits for a signal (with the command that delivers it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from floworch.cli.render import error_line

if TYPE_CHECKING:
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
_PARKING = ("WaitForSignal", "ForEach")


def describe_step(key: str, status: str, detail: str = "") -> str:
    """One progress line."""
    mark = _MARKS.get(status, "   ")
    return f"  [{mark}] {key:<30} {status}{('  ' + detail) if detail else ''}"


def signal_waits(run: RunState) -> list[tuple[str, str]]:
    """``(step key, signal name)`` of every step of the run waiting for a signal."""
    waits = []
    for key, step in run.steps.items():
        if str(step.status) == "Waiting" and step.type == "WaitForSignal":
            inputs = step.inputs if isinstance(step.inputs, dict) else {}
            waits.append((key, str(inputs.get("signalName", "?"))))
    return waits


def parked_on_signals(run: RunState) -> bool:
    """Whether the run can only go on once a signal arrives: nothing is pending or running,
    nothing waits for a time (a delay, a poll, a retry), and some step waits for a signal."""
    if run.done:
        return False
    for step in run.steps.values():
        status = str(step.status)
        if status in ("Pending", "Running"):
            return False
        if status == "Waiting" and step.type not in _PARKING:
            return False
    return bool(signal_waits(run))


def signal_hint(run_id: str, key: str, name: str, db_flag: str) -> str:
    """The notice for a step waiting for a signal."""
    return (
        f"run {run_id}: step {key} waits for signal {name!r}; deliver it with:\n"
        f"  floworch signal {run_id} {name} --payload '{{...}}'{db_flag}"
    )


@dataclass
class RunWatch:
    """Follows runs until each has finished (or, with ``stop_when_parked``, waits only for a
    signal).

    Attributes:
        engine: the engine executing the runs.
        steps_out: where step changes go (a terminal), or None to print none.
        notes_out: where signal notices go (stderr when stdout carries JSON).
        db_flag: `` --db URL`` to add to the hints when the database is not the default.
        stop_when_parked: treat a run parked on a signal as settled (``floworch resume``).
        on_settled: called once per run when it finished or parked.
    """

    engine: Engine
    steps_out: TextIO | None
    notes_out: TextIO
    db_flag: str = ""
    stop_when_parked: bool = False
    on_settled: Callable[[RunState], None] | None = None
    interval: float = 0.1
    _seen: dict[tuple[str, str], str] = field(default_factory=dict)
    _hinted: set[tuple[str, str]] = field(default_factory=set)

    async def follow(self, run_ids: Sequence[str]) -> dict[str, RunState]:
        """Polls the runs; returns each one's state when it settled."""
        open_ids = list(dict.fromkeys(run_ids))
        settled: dict[str, RunState] = {}
        while open_ids:
            for run_id in list(open_ids):
                run = await self.engine.get_run(run_id)
                self._report(run)
                if run.done or (self.stop_when_parked and parked_on_signals(run)):
                    open_ids.remove(run_id)
                    settled[run_id] = run
                    if self.on_settled is not None:
                        self.on_settled(run)
            if open_ids:
                await asyncio.sleep(self.interval)
        return settled

    def _report(self, run: RunState) -> None:
        if self.steps_out is not None:
            for key, step in run.steps.items():
                status = str(step.status)
                if self._seen.get((run.run_id, key)) == status:
                    continue
                self._seen[(run.run_id, key)] = status
                detail = ""
                if step.error:
                    detail = error_line(step.error)[:120]
                elif step.skip_reason:
                    detail = step.skip_reason[:120]
                self.steps_out.write(describe_step(key, status, detail) + "\n")
            self.steps_out.flush()
        for key, name in signal_waits(run):
            if (run.run_id, key) in self._hinted:
                continue
            self._hinted.add((run.run_id, key))
            self.notes_out.write(signal_hint(run.run_id, key, name, self.db_flag) + "\n")
            self.notes_out.flush()
