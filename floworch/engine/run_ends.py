"""Tells waiters in this process that a run ended, once the transaction that ended it committed.

:meth:`~floworch.engine.Engine.wait_for_run` used to learn it only from polling the store (every
20 ms), which was most of a one-step run's latency on the embedded host. A run that ends in
another process (a Service Bus worker) is still found by the poll, which stays as the fallback.
"""

from __future__ import annotations

import asyncio


class RunEnds:
    """Per-run wake-ups for :meth:`~floworch.engine.Engine.wait_for_run`."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}

    def watch(self, run_id: str) -> asyncio.Event:
        """An event set each time ``run_id`` ends (clear it before each look at the store)."""
        event = asyncio.Event()
        self._watchers.setdefault(run_id, set()).add(event)
        return event

    def unwatch(self, run_id: str, event: asyncio.Event) -> None:
        watchers = self._watchers.get(run_id)
        if watchers is not None:
            watchers.discard(event)
            if not watchers:
                del self._watchers[run_id]

    def ended(self, run_id: str) -> None:
        """Called after the commit that ended ``run_id``."""
        for event in self._watchers.get(run_id, ()):
            event.set()

    def watching(self, run_id: str) -> int:
        """How many waiters watch ``run_id`` (for tests)."""
        return len(self._watchers.get(run_id, ()))
