"""The embedded host: engine + in-process runtime + reconciler and cron loops in one process.

It is what ``floworch run``, ``floworch resume`` and the test host build on. State lives in the
store you give it (memory, or SQLite so that a crashed run can be resumed). Step messages go
through the one :class:`~floworch.engine.consumer.StepConsumer`; the in-process runtime applies
its verdicts (retry after a back-off, or a recorded dead letter: :attr:`EmbeddedHost.dead_letters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from floworch.engine.consumer import RetryPolicy, StepConsumer
from floworch.engine.engine import Engine
from floworch.engine.executor import abandoned_line
from floworch.engine.flows import FlowRegistry
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import Clock, Dispatcher, SystemClock
from floworch.engine.reconciler import ReconcilerSettings
from floworch.engine.schedules import effective_cron, latest_missed, next_fire
from floworch.model import CronTrigger, FlowDefinition, FlowManifest
from floworch.runtime.memory import DeadLetterRecord, InProcessDispatcher
from floworch.storage.port import Store
from floworch.storage.records import ScheduleState

log = logging.getLogger("floworch.hosting.embedded")


@dataclass(frozen=True)
class EmbeddedSettings:
    """Options of the embedded host.

    Attributes:
        concurrency: steps running at once.
        tick: how often the reconciler and cron loop look around (also how quickly a signal,
            cancel or retry written by another process is picked up).
        reconciler: reconciler thresholds; the embedded default re-sends unsent rows after 1 s,
            since another process (the CLI) may have written them with no way to reach us.
        cron: whether to fire cron triggers.
        lease: step lease length.
        retry: how failures to handle a step message (store outage, poison) are retried.
        handler_grace: on stop, how long handlers that outlived their step (they ignored a
            timeout or cancellation) get to return before they are abandoned.
        dead_letter_limit: how many dead-lettered step messages :attr:`EmbeddedHost.dead_letters`
            keeps (the newest; the count since start is ``dispatcher.dead_lettered``).
    """

    concurrency: int = 8
    tick: timedelta = timedelta(milliseconds=500)
    reconciler: ReconcilerSettings = field(
        default_factory=lambda: ReconcilerSettings(
            unsent_grace=timedelta(seconds=1), lost_after=timedelta(seconds=30)
        )
    )
    cron: bool = True
    lease: timedelta = timedelta(seconds=30)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    handler_grace: timedelta = timedelta(seconds=1)
    dead_letter_limit: int = 1000


class EmbeddedHost:
    """Runs flows in this process. Use as ``async with EmbeddedHost(...) as host``.

    Args:
        store: where state lives.
        flows: the flows to run.
        handlers: step handlers (default: the ``@floworch.handler`` registry).
        clock: time source (the test host passes a manual clock).
        settings: host options.
        check_handlers: refuse flows whose step types have no handler.
        dispatcher: wraps the in-process dispatcher the engine sends through (tests use it to
            duplicate or drop messages); the workers still receive from the in-process one.
    """

    def __init__(
        self,
        *,
        store: Store,
        flows: FlowRegistry | Iterable[FlowManifest | FlowDefinition],
        handlers: HandlerRegistry | None = None,
        clock: Clock | None = None,
        settings: EmbeddedSettings | None = None,
        check_handlers: bool = True,
        dispatcher: Callable[[Dispatcher], Dispatcher] | None = None,
    ) -> None:
        self.settings = settings or EmbeddedSettings()
        self.clock = clock or SystemClock()
        self.dispatcher = InProcessDispatcher(
            clock=self.clock,
            concurrency=self.settings.concurrency,
            dead_letter_limit=self.settings.dead_letter_limit,
            policy=self.settings.retry,
        )
        self.engine = Engine(
            store=store,
            dispatcher=dispatcher(self.dispatcher) if dispatcher else self.dispatcher,
            flows=flows,
            handlers=handlers,
            clock=self.clock,
            lease=self.settings.lease,
            check_handlers=check_handlers,
            # A wrapped dispatcher (tests' faulty transports) may fail a send: keep marking.
            in_memory_hand_off=dispatcher is None,
        )
        self.consumer = StepConsumer(self.engine, policy=self.settings.retry)
        self._loop_task: asyncio.Task[None] | None = None
        self._next_fires: dict[tuple[str, str], tuple[str, datetime]] = {}
        self._stop = asyncio.Event()

    @property
    def store(self) -> Store:
        """The host's store."""
        return self.engine.store

    async def start(self) -> None:
        """Stores the flows, starts the workers, reconciles once (resuming unfinished runs) and
        starts the background loop."""
        await self.engine.sync_flows()
        self.dispatcher.start(self.consumer.handle)
        await self.engine.reconcile(self.settings.reconciler)
        await self._seed_cron()
        self._stop.clear()
        self._loop_task = asyncio.create_task(self._background(), name="floworch-embedded-loop")

    @property
    def dead_letters(self) -> list[DeadLetterRecord]:
        """The newest step messages set aside as poison (see ``dispatcher.dead_lettered`` for
        the count since start)."""
        return list(self.dispatcher.dead_letters)

    async def stop(self) -> None:
        """Stops the loop and the workers (steps in flight are cancelled). Handlers that ignore
        the cancellation are abandoned after ``handler_grace``, with one line saying so."""
        self._stop.set()
        if self._loop_task is not None:
            # Let a pass in progress finish (it sees the stop event): cancelling it mid-query
            # would leave its database connection unreturned. Cancel only if it hangs.
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), timeout=5)
            except TimeoutError:
                self._loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loop_task
            except asyncio.CancelledError:
                self._loop_task.cancel()
                raise
            self._loop_task = None
        await self.dispatcher.stop()
        left = await self.engine.core.executor.wait_abandoned(self.settings.handler_grace)
        if left:
            log.warning(abandoned_line(left))

    async def __aenter__(self) -> EmbeddedHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def tick(self) -> None:
        """One pass of the background work: reconcile and fire due cron triggers."""
        await self.engine.reconcile(self.settings.reconciler)
        if self.settings.cron:
            await self._fire_due_cron()

    async def _background(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("embedded host background pass failed; trying again")
            await self.clock.wait_until(self.clock.now() + self.settings.tick, self._stop)
            if isinstance(self.clock, SystemClock):
                continue
            # A manual clock does not move by itself; avoid spinning while nobody advances it.
            await asyncio.sleep(0.01)

    # -- cron ----------------------------------------------------------------------------------

    def _cron_triggers(self) -> list[tuple[FlowDefinition, str, CronTrigger]]:
        return [
            (flow, key, trigger)
            for flow in self.engine.flows
            for key, trigger in flow.triggers.items()
            if isinstance(trigger, CronTrigger)
        ]

    async def _seed_cron(self) -> None:
        if not self.settings.cron:
            return
        now = self.clock.now()
        for flow, key, trigger in self._cron_triggers():
            state = await self.store.get_schedule_state(flow.id, key)
            cron = effective_cron(trigger, state.cron_override if state else None)
            if state is not None and state.last_fire_at is not None and not state.paused:
                missed = latest_missed(cron, state.last_fire_at, now, trigger.timezone)
                if missed is not None and trigger.missed_fires == "fireOnce":
                    await self.engine.fire_schedule(flow.id, key, missed)
            self._next_fires[(flow.id, key)] = (cron, next_fire(cron, now, trigger.timezone))

    async def next_cron_fire(self) -> datetime | None:
        """When the next cron trigger falls due (overrides stored since the last look count)."""
        if not self.settings.cron:
            return None
        now = self.clock.now()
        dues = [
            (await self._cron_chain(flow, key, trigger, now))[2]
            for flow, key, trigger in self._cron_triggers()
        ]
        return min(dues, default=None)

    async def _cron_chain(
        self, flow: FlowDefinition, key: str, trigger: CronTrigger, now: datetime
    ) -> tuple[ScheduleState | None, str, datetime]:
        state = await self.store.get_schedule_state(flow.id, key)
        cron = effective_cron(trigger, state.cron_override if state else None)
        cached = self._next_fires.get((flow.id, key))
        if cached is None or cached[0] != cron:
            # First look, or the cron was overridden: the new chain starts from now.
            cached = (cron, next_fire(cron, now, trigger.timezone))
            self._next_fires[(flow.id, key)] = cached
        return state, cron, cached[1]

    async def _fire_due_cron(self) -> None:
        now = self.clock.now()
        for flow, key, trigger in self._cron_triggers():
            state, cron, due = await self._cron_chain(flow, key, trigger, now)
            if due > now:
                continue
            if state is None or not state.paused:
                await self.engine.fire_schedule(flow.id, key, due)
            self._next_fires[(flow.id, key)] = (cron, next_fire(cron, due, trigger.timezone))

    async def run_flow(
        self,
        flow_id: str,
        trigger_key: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> str | None:
        """Triggers a run and returns its id (None for a disabled flow)."""
        result = await self.engine.trigger(flow_id, trigger_key, body, headers, idempotency_key)
        return result.run_id
