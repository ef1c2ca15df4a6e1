"""The in-process runtime: an asyncio dispatcher with bounded concurrency and durable-friendly
timers. Messages live in memory; durability comes from the store's ledger (the reconciler
re-sends what a crashed process never ran).

Each received message goes to a step consumer (:class:`floworch.engine.consumer.StepConsumer`)
and its verdict is applied here: ``Complete`` drops the message, ``Retry(after)`` puts it back on
the queue after ``after`` (real time: it is an outage's back-off, not flow time), ``DeadLetter``
records it in a bounded list (:attr:`InProcessDispatcher.dead_letters`) and logs one line.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from floworch.engine.consumer import (
    DeadLetter,
    Delivery,
    Retry,
    RetryPolicy,
    Verdict,
    failure_verdict,
)
from floworch.engine.envelope import StepEnvelope
from floworch.engine.ports import Clock, SystemClock
from floworch.telemetry.hooks import Telemetry

log = logging.getLogger("floworch.runtime.memory")

Body = StepEnvelope | bytes
"""What travels in-process: envelopes as they are (no codec on the hot path), or raw bodies
handed in from elsewhere (:meth:`InProcessDispatcher.deliver`)."""

Consumer = Callable[[Body, Delivery], Awaitable[Verdict]]
"""Decides a message's verdict; :meth:`floworch.engine.consumer.StepConsumer.handle` is one."""


@dataclass(frozen=True)
class DeadLetterRecord:
    """A message the in-process runtime set aside: it can never succeed."""

    message_id: str
    reason: str
    description: str
    at: datetime


@dataclass
class _Message:
    body: Body
    message_id: str
    attempt: int = 1
    first_failure: float | None = None  # loop time of the first failed attempt


class InProcessDispatcher:
    """Implements the dispatcher port in-process; ``start(consumer)`` runs the workers.

    Args:
        clock: decides when scheduled messages are due (a ManualClock makes them fire on
            ``advance``).
        concurrency: how many steps run at once.
        dead_letter_limit: how many dead letters :attr:`dead_letters` keeps (the newest).
        policy: the retry rules applied when a consumer itself fails (it should not: the step
            consumer turns every failure into a verdict).
        telemetry: where dead letters are counted (default: the process's global providers).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        concurrency: int = 8,
        dead_letter_limit: int = 1000,
        policy: RetryPolicy | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._clock = clock or SystemClock()
        self._concurrency = concurrency
        self._policy = policy or RetryPolicy()
        self._telemetry = telemetry or Telemetry()
        self._queue: asyncio.Queue[_Message] = asyncio.Queue()
        self._timers: list[tuple[datetime, int, StepEnvelope]] = []
        self._counter = itertools.count()
        self._timer_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.TimerHandle] = set()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.sent = 0
        self.retried = 0
        """Messages put back on the queue after a ``Retry`` verdict."""
        self.dead_lettered = 0
        """Messages dead-lettered since start (``dead_letters`` keeps only the newest)."""
        self.dead_letters: deque[DeadLetterRecord] = deque(maxlen=dead_letter_limit)

    # -- the dispatcher port -------------------------------------------------------------------

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        for envelope in envelopes:
            self._queue.put_nowait(_Message(envelope, envelope.message_id))
        self.sent += len(envelopes)
        if envelopes:
            self._idle.clear()

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        heapq.heappush(self._timers, (at, next(self._counter), envelope))
        self.sent += 1
        self._timer_changed.set()

    def deliver(self, body: bytes, *, message_id: str | None = None) -> str:
        """Hands a raw message body to the consumer as if it had arrived (a bridge from another
        transport, or a test of poison bodies); returns its message id."""
        mid = message_id or uuid.uuid4().hex
        self._queue.put_nowait(_Message(body, mid))
        self._idle.clear()
        return mid

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
        """Stops the workers; steps in flight are cancelled (their leases lapse) and pending
        retries are dropped (the reconciler re-sends what they would have run)."""
        tasks, self._tasks = self._tasks, []
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._update_idle()

    @property
    def pending_timers(self) -> int:
        """Scheduled messages not yet due."""
        return len(self._timers)

    @property
    def retrying(self) -> int:
        """Messages waiting to be handed over again after a ``Retry`` verdict."""
        return len(self._retries)

    def next_timer(self) -> datetime | None:
        """When the next scheduled message is due."""
        return self._timers[0][0] if self._timers else None

    async def wait_idle(self) -> None:
        """Waits until no message is queued, running or waiting to be retried (timers not yet
        due may remain)."""
        while True:
            await self._idle.wait()
            await asyncio.sleep(0)
            if self._queue.empty() and self._busy == 0 and not self._retries:
                return

    async def _work(self, consumer: Consumer) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await self._queue.get()
            self._busy += 1
            try:
                failing_for = (
                    0.0 if message.first_failure is None else loop.time() - message.first_failure
                )
                delivery = Delivery(
                    message.message_id,
                    attempt=message.attempt,
                    failing_for=timedelta(seconds=failing_for),
                )
                verdict = await self._decide(consumer, message, delivery)
                self._apply(message, verdict, loop)
            finally:
                self._busy -= 1
                self._queue.task_done()
                self._update_idle()

    async def _decide(self, consumer: Consumer, message: _Message, delivery: Delivery) -> Verdict:
        try:
            return await consumer(message.body, delivery)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this worker is stopping
            return self._consumer_failed(message, delivery, exc)
        except BaseException as exc:  # a worker survives anything its consumer does
            return self._consumer_failed(message, delivery, exc)

    def _consumer_failed(
        self, message: _Message, delivery: Delivery, exc: BaseException
    ) -> Verdict:
        log.error("the consumer of message %s failed", message.message_id, exc_info=exc)
        return failure_verdict(exc, delivery, self._policy)

    def _apply(self, message: _Message, verdict: Verdict, loop: asyncio.AbstractEventLoop) -> None:
        if isinstance(verdict, Retry):
            if message.first_failure is None:
                message.first_failure = loop.time()
            message.attempt += 1
            self.retried += 1
            handle: asyncio.TimerHandle | None = None

            def again() -> None:
                assert handle is not None
                self._retries.discard(handle)
                self._queue.put_nowait(message)

            handle = loop.call_later(max(verdict.after.total_seconds(), 0.0), again)
            self._retries.add(handle)
            log.warning(
                "step message %s: %s; trying again in %.1f s",
                message.message_id,
                verdict.why,
                verdict.after.total_seconds(),
            )
        elif isinstance(verdict, DeadLetter):
            self.dead_lettered += 1
            self._telemetry.dead_lettered(verdict.reason, "in-process")
            self.dead_letters.append(
                DeadLetterRecord(
                    message.message_id, verdict.reason, verdict.description, datetime.now(UTC)
                )
            )
            log.error(
                "dead-lettered step message %s: %s: %s",
                message.message_id,
                verdict.reason,
                verdict.description,
            )

    def _update_idle(self) -> None:
        if self._queue.empty() and self._busy == 0 and not self._retries:
            self._idle.set()
        else:
            self._idle.clear()

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
                    self._queue.put_nowait(_Message(envelope, envelope.message_id))
