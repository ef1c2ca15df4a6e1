"""An in-memory :class:`ExpressionContext` for tests, docs and tools such as a REPL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .context import CaseInsensitiveHeaders, StepView
from .errors import ExpressionEvaluationError

_NO_ITEM = object()


class InMemoryContext:
    """Holds a trigger, finished steps, an optional ForEach item and a fixed clock.

    Args:
        body: The trigger body.
        headers: Trigger headers (looked up case-insensitively).
        steps: Step views by key; keys not present read as "not run".
        item: The current ForEach item; leave unset outside a ForEach.
        index: The current ForEach index.
        now: The time ``utcNow()`` returns (default: the real current time).
    """

    def __init__(
        self,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        steps: Mapping[str, StepView] | None = None,
        item: Any = _NO_ITEM,
        index: int = 0,
        now: datetime | None = None,
    ) -> None:
        self._body = body
        self._headers = CaseInsensitiveHeaders(headers or {})
        self._steps = dict(steps or {})
        self._item = item
        self._index = index
        self._now = now

    def trigger_body(self) -> Any:
        """Return the trigger body."""
        return self._body

    def trigger_headers(self) -> Mapping[str, str]:
        """Return the case-insensitive trigger headers."""
        return self._headers

    def step(self, key: str) -> StepView | None:
        """Return the view of step ``key`` or None."""
        return self._steps.get(key)

    def item(self) -> Any:
        """Return the ForEach item; raise ExpressionEvaluationError outside a ForEach."""
        if self._item is _NO_ITEM:
            raise ExpressionEvaluationError("item() is only available inside a ForEach")
        return self._item

    def index(self) -> int:
        """Return the ForEach index; raise ExpressionEvaluationError outside a ForEach."""
        if self._item is _NO_ITEM:
            raise ExpressionEvaluationError("index() is only available inside a ForEach")
        return self._index

    def now(self) -> datetime:
        """Return the fixed time, or the current UTC time when none was given."""
        return self._now if self._now is not None else datetime.now(UTC)
