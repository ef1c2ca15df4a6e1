"""Test helpers: InMemoryContext with a fixed clock that records step lookups."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from floworch.expressions import InMemoryContext, StepView

FIXED_NOW = datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)


class FakeContext(InMemoryContext):
    """An InMemoryContext whose clock defaults to FIXED_NOW and which counts step lookups."""

    def __init__(self, body: Any = None, *, now: datetime = FIXED_NOW, **kwargs: Any) -> None:
        super().__init__(body, now=now, **kwargs)
        self.step_lookups: list[str] = []

    def step(self, key: str) -> StepView | None:
        self.step_lookups.append(key)
        return super().step(key)


def succeeded(output: Any) -> StepView:
    """A step view for a step that succeeded with ``output``."""
    return StepView(status="Succeeded", output=output, error=None)


def failed(error_type: str, message: str) -> StepView:
    """A step view for a failed step."""
    return StepView(status="Failed", output=None, error={"type": error_type, "message": message})
