"""Helpers for the engine scenario tests: manifests, a recording dispatcher, a manual engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from floworch.engine.engine import Engine
from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import ManualClock
from floworch.model import load_manifest
from floworch.storage.memory import MemoryStore

START = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)


def flow(steps: dict[str, Any], *, flow_id: str = "f", **extra: Any) -> dict[str, Any]:
    """A manifest dict with one flow."""
    return {"id": flow_id, "version": "1", "steps": steps, **extra}


class RecordingDispatcher:
    """A dispatcher that only records what it was given; the test delivers by hand."""

    def __init__(self) -> None:
        self.sent: list[StepEnvelope] = []
        self.scheduled: list[tuple[StepEnvelope, datetime]] = []

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        self.sent.extend(envelopes)

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        self.scheduled.append((envelope, at))

    def take(self) -> list[StepEnvelope]:
        sent, self.sent = self.sent, []
        return sent


def manual_engine(
    manifest: dict[str, Any], handlers: HandlerRegistry
) -> tuple[Engine, RecordingDispatcher, ManualClock]:
    """An engine whose messages the test delivers itself (``engine.run_step``)."""
    clock = ManualClock(START)
    dispatcher = RecordingDispatcher()
    engine = Engine(
        store=MemoryStore(),
        dispatcher=dispatcher,
        flows=[load_manifest(manifest)],
        handlers=handlers,
        clock=clock,
    )
    return engine, dispatcher, clock
