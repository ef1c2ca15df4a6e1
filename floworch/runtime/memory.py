"""The in-process runtime: an asyncio dispatcher with bounded concurrency and durable-friendly
timers. Messages live in memory; durability comes from the store's ledger (the reconciler
re-sends what a crashed process never ran)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from floworch.engine.envelope import StepEnvelope
from floworch.engine.ports import Clock, SystemClock

log = logging.getLogger("floworch.runtime.memory")

Consumer = Callable[[StepEnvelope], Awaitable[object]]


class InProcessDispatcher:
    """Implements the dispatcher port in-process; ``start(consumer)`` runs the workers.

    Args:
        clock: decides when scheduled messages are due (a ManualClock makes them fire on
            ``advance``).
        concurrency: how many steps run at once.
    """

    def __init__(self, *, clock: Clock | None = None, concurrency: int = 8) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._clock = clock or SystemClock()
        self._concurrency = concurrency
        self._queue: asyncio.Queue[StepEnvelope] = asyncio.Queue()
        self._timers: list[tuple[datetime, int, StepEnvelope]] = []
        self._counter = itertools.count()
        self._timer_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.sent = 0
        self.failures = 0

    # -- the dispatcher port -------------------------------------------------------------------

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        for envelope in envelopes:
            self._queue.put_nowait(envelope)
        self.sent += len(envelopes)
        if envelopes:
            self._idle.clear()

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        heapq.heappush(self._timers, (at, next(self._counter), envelope))
        self.sent += 1
        self._timer_changed.set()

    # -- running -------------------------------------------------------------------------------

    def start(self, consumer: Consumer) -> None:
        """Starts the worker tasks and the timer task on the running loop."""
        if self._tasks:
            raise RuntimeError("the dispatcher is already running")
        self._tasks = [
            asyncio.create_task(self._work(consumer), name=f"floworch-worker-{i}")
            for i in range(self._concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="floworch-timers"))

    async def stop(self) -> None:
        """Stops the workers; steps in flight are cancelled (their leases lapse)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def pending_timers(self) -> int:
        """Scheduled messages not yet due."""
        return len(self._timers)

    def next_timer(self) -> datetime | None:
        """When the next scheduled message is due."""
        return self._timers[0][0] if self._timers else None

    async def wait_idle(self) -> None:
        """Waits until no message is queued or running (timers not yet due may remain)."""
        while True:
            await self._idle.wait()
            await asyncio.sleep(0)
            if self._queue.empty() and self._busy == 0:
                return

    async def _work(self, consumer: Consumer) -> None:
        while True:
            envelope = await self._queue.get()
            self._busy += 1
            try:
                await consumer(envelope)
            except asyncio.CancelledError:
                raise
            except Exception:  # the ledger and reconciler recover; one bad step must not kill us
                self.failures += 1
                log.exception("step %s failed in the runtime", envelope.message_id)
            finally:
                self._busy -= 1
                self._queue.task_done()
                if self._queue.empty() and self._busy == 0:
                    self._idle.set()

    async def _timer_loop(self) -> None:
        while True:
            self._timer_changed.clear()
            if not self._timers:
                await self._timer_changed.wait()
                continue
            due = self._timers[0][0]
            await self._clock.wait_until(due, self._timer_changed)
            now = self._clock.now()
            ready: list[StepEnvelope] = []
            while self._timers and self._timers[0][0] <= now:
                ready.append(heapq.heappop(self._timers)[2])
            if ready:
                self._idle.clear()
                for envelope in ready:
                    self._queue.put_nowait(envelope)
