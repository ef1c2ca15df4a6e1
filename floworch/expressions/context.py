"""The port through which expressions read run state: :class:`ExpressionContext`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StepView:
    """What an expression can see of one step: ``steps('key').status/.output/.error``.

    Attributes:
        status: The step's status name, e.g. ``"Succeeded"``.
        output: The step's JSON output (``None`` when it has none).
        error: ``{"type": ..., "message": ...}`` when the step failed, else ``None``.
    """

    status: str
    output: Any
    error: Any

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"status", "output", "error"}``, the value of a bare ``steps('key')``."""
        return {"status": self.status, "output": self.output, "error": self.error}


class ExpressionContext(Protocol):
    """Run state an expression is evaluated against; the engine implements it."""

    def trigger_body(self) -> Any:
        """Return the JSON body of the trigger message."""
        ...

    def trigger_headers(self) -> Mapping[str, str]:
        """Return the trigger headers; lookup must be case-insensitive."""
        ...

    def step(self, key: str) -> StepView | None:
        """Return the view of step ``key``, or ``None`` if it is unknown or has not run."""
        ...

    def item(self) -> Any:
        """Return the current ForEach item; raise ExpressionEvaluationError outside a ForEach."""
        ...

    def index(self) -> int:
        """Return the 0-based index of the current ForEach item."""
        ...

    def now(self) -> datetime:
        """Return the current time as a timezone-aware UTC datetime."""
        ...


class CaseInsensitiveHeaders(Mapping[str, str]):
    """A read-only header mapping whose lookups ignore case (``x-id`` finds ``X-Id``).

    Iteration yields the keys as originally spelled.
    """

    __slots__ = ("_by_lower",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._by_lower: dict[str, tuple[str, str]] = {
            str(key).lower(): (str(key), value) for key, value in headers.items()
        }

    def __getitem__(self, key: str) -> str:
        if not isinstance(key, str):
            raise KeyError(key)
        return self._by_lower[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._by_lower

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._by_lower.values())

    def __len__(self) -> int:
        return len(self._by_lower)

    def __repr__(self) -> str:
        return f"CaseInsensitiveHeaders({dict(self.items())!r})"
