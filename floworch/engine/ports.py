"""The engine's ports besides storage: the dispatcher (how step messages travel) and the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from floworch.engine.envelope import StepEnvelope


class Dispatcher(Protocol):
    """Sends step messages to whatever runs them (in-process queue, Service Bus topic)."""

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        """Sends messages for immediate execution, as one batch where the transport allows.

        Raises:
            TransportError: the messages could not be sent (the ledger keeps them for a re-send).
        """

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        """Sends a message that becomes visible at ``at`` (delays, retries, polls, timeouts)."""


class Clock(Protocol):
    """Time as the engine sees it; tests substitute a clock they move by hand."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    async def wait_until(self, when: datetime, interrupt: asyncio.Event) -> None:
        """Returns once ``when`` is reached or ``interrupt`` is set, whichever comes first."""


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def wait_until(self, when: datetime, interrupt: asyncio.Event) -> None:
        delay = (when - self.now()).total_seconds()
        if delay <= 0 or interrupt.is_set():
            return
        try:
            await asyncio.wait_for(interrupt.wait(), timeout=delay)
        except TimeoutError:
            return


class ManualClock:
    """A clock that moves only when told to (``advance``), for deterministic tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Moves time forward and wakes every waiter so it can check whether its moment came."""
        self._now = self._now + delta
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def set(self, when: datetime) -> None:
        """Moves time to ``when`` (never backwards)."""
        if when > self._now:
            self.advance(when - self._now)

    async def wait_until(self, when: datetime, interrupt: asyncio.Event) -> None:
        while self._now < when and not interrupt.is_set():
            moved = asyncio.ensure_future(self._moved.wait())
            stopped = asyncio.ensure_future(interrupt.wait())
            try:
                await asyncio.wait({moved, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
                stopped.cancel()


__all__ = ["Clock", "Dispatcher", "ManualClock", "StepEnvelope", "SystemClock"]
