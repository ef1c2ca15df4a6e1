"""The engine's shared parts: ports, registries and sending what a transaction decided."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from floworch.engine.context import Cancellation
from floworch.engine.envelope import StepEnvelope
from floworch.engine.executor import HandlerExecutor
from floworch.engine.flows import FlowRegistry
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import Clock, Dispatcher
from floworch.engine.run_ends import RunEnds
from floworch.errors import TransportError
from floworch.storage.port import Store
from floworch.telemetry.hooks import Telemetry, messaging_target

log = logging.getLogger("floworch.engine")

Send = tuple[StepEnvelope, datetime | None]
"""A message to send after commit: immediately (None) or at a time."""


@dataclass
class EngineCore:
    """What every engine operation needs. Built by :class:`floworch.engine.Engine`."""

    store: Store
    dispatcher: Dispatcher
    clock: Clock
    flows: FlowRegistry
    handlers: HandlerRegistry
    telemetry: Telemetry
    owner: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:12]}")
    lease: timedelta = timedelta(seconds=30)
    renew_every: timedelta = timedelta(seconds=1)
    running: dict[str, set[Cancellation]] = field(default_factory=dict)
    join_hints: dict[tuple[str, str], str] = field(default_factory=dict)
    """(run id, join step key) -> a predecessor that blocked the join at its last check."""
    executor: HandlerExecutor = field(default_factory=HandlerExecutor)
    """Runs handler attempts; remembers handlers left running after their step ended."""
    in_memory_hand_off: bool = False
    """Ledger rows are written as sent: the dispatcher hands messages over in this process
    (see :class:`~floworch.engine.Engine`)."""
    run_ends: RunEnds = field(default_factory=RunEnds)
    """Wakes :meth:`~floworch.engine.Engine.wait_for_run` when a run ends in this process."""

    async def send(self, sends: Sequence[Send], *, recorded_sent: bool = False) -> None:
        """Sends messages a committed transaction recorded in the ledger, then marks them sent
        (unless their rows were written as sent: ``recorded_sent``).

        A transport failure is logged and left to the reconciler: the ledger rows stay unsent.
        """
        if not sends:
            return
        # One flow.dispatch span per message; its context travels in the message.
        sends, spans = self.telemetry.begin_dispatch(sends, messaging_target(self.dispatcher))
        now = self.clock.now()
        immediate = [env for env, at in sends if at is None or at <= now]
        later = [(env, at) for env, at in sends if at is not None and at > now]
        sent: list[tuple[str, str, int]] = []
        failure: TransportError | None = None
        try:
            if immediate:
                await self.dispatcher.enqueue(immediate)
                sent.extend((e.run_id, e.step_key, e.seq) for e in immediate)
            for env, at in later:
                assert at is not None
                await self.dispatcher.schedule(env, at)
                sent.append((env.run_id, env.step_key, env.seq))
        except TransportError as exc:
            failure = exc
            log.warning(
                "sending %d step message(s) failed; the reconciler will retry: %s",
                len(sends) - len(sent),
                exc,
            )
        self.telemetry.end_dispatch(sends, spans, set(sent), failure)
        if sent and not recorded_sent:
            await self.store.mark_dispatched(sent, now)

    def cancel_local(self, run_id: str, reason: str) -> None:
        """Signals cancellation to handlers of ``run_id`` running in this process."""
        for token in list(self.running.get(run_id, ())):
            token.set(reason)
