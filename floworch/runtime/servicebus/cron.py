"""The cron hub: cron triggers as self-perpetuating scheduled messages on the cron queue.

Each tick message is scheduled for its fire time. The replica that receives it first schedules
the next tick (computed from this tick's fire time, so nothing drifts) and then fires the current
one. Exactly one run per fire time, across redeliveries and replicas, comes from two guards: the
tick's ``MessageId`` is ``<flowId>:<triggerKey>:<fireTimeIso>`` (duplicate detection merges two
replicas' chains into one), and ``Engine.fire_schedule`` records each fire time once in SQL.

Pause, resume and cron overrides live in SQL (``ScheduleState``), so every replica obeys them.
A tick carries the expression it was computed from; after an override, the hub seeds the new
chain, and a tick of the old expression is dropped on arrival unless its fire time is also one of
the new expression: then it is the new chain's tick (its ``MessageId`` is the same, so duplicate
detection has merged the two), and it carries the new chain on. The old pending tick is therefore
not cancelled: cancelling it could leave the new chain with no tick at all. ``ensure_chains`` (at
start-up and periodically) seeds any chain that has no pending tick, or whose tick is overdue
(lost; that one is cancelled), applying the trigger's missed-fire policy.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

from floworch import strict_json
from floworch.engine.consumer import (
    COMPLETE,
    DeadLetter,
    Delivery,
    RetryPolicy,
    Verdict,
    failure_verdict,
)
from floworch.engine.engine import Engine
from floworch.engine.schedules import effective_cron, latest_missed, next_fire
from floworch.errors import EnvelopeError, TransportError
from floworch.model import CronTrigger, FlowDefinition
from floworch.runtime.servicebus.messages import body_bytes
from floworch.runtime.servicebus.names import DEFAULT_CRON_QUEUE
from floworch.storage.records import ScheduleState

log = logging.getLogger("floworch.runtime.servicebus.cron")

TICK_VERSION = 1
REASON_BAD_TICK = "CronTickInvalid"
REASON_UNKNOWN_TRIGGER = "UnknownCronTrigger"


@dataclass(frozen=True)
class CronTick:
    """One scheduled fire of one cron trigger."""

    flow_id: str
    trigger_key: str
    fire_time: datetime
    cron: str

    @property
    def message_id(self) -> str:
        return f"{self.flow_id}:{self.trigger_key}:{self.fire_time.isoformat()}"

    def to_message(self) -> ServiceBusMessage:
        body = {
            "v": TICK_VERSION,
            "flowId": self.flow_id,
            "triggerKey": self.trigger_key,
            "fireTime": self.fire_time.isoformat(),
            "cron": self.cron,
        }
        return ServiceBusMessage(
            json.dumps(body, separators=(",", ":")),
            message_id=self.message_id,
            subject=f"{self.flow_id}:{self.trigger_key}",
            content_type="application/json",
            application_properties={"FlowId": self.flow_id, "TriggerKey": self.trigger_key},
        )

    @classmethod
    def from_message(cls, message: ServiceBusReceivedMessage) -> CronTick:
        """Raises EnvelopeError for a body that is not a tick of this version."""
        try:
            data: Any = strict_json.loads(body_bytes(message))
        except strict_json.NotStrictJsonError as exc:
            raise EnvelopeError(f"cron tick body is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("v") != TICK_VERSION:
            raise EnvelopeError(
                f"cron tick must be a JSON object with v={TICK_VERSION}, got {str(data)[:200]}"
            )
        try:
            fire_time = datetime.fromisoformat(str(data["fireTime"]))
            tick = cls(str(data["flowId"]), str(data["triggerKey"]), fire_time, str(data["cron"]))
        except (KeyError, ValueError) as exc:
            raise EnvelopeError(f"cron tick lacks or mangles a field: {exc!r}") from exc
        if fire_time.tzinfo is None:
            tick = replace(tick, fire_time=fire_time.replace(tzinfo=UTC))
        return tick


class CronHub:
    """Seeds, consumes and re-chains cron ticks for the flows of one engine.

    Args:
        engine: whose flows' cron triggers the hub drives.
        client: the process's long-lived client.
        queue: the cron queue.
        lost_after: a pending tick this overdue is considered lost and the chain is re-seeded.
        policy: how ticks whose handling fails are retried (an outage) or dead-lettered.
    """

    def __init__(
        self,
        engine: Engine,
        client: ServiceBusClient,
        *,
        queue: str = DEFAULT_CRON_QUEUE,
        lost_after: timedelta = timedelta(seconds=60),
        policy: RetryPolicy | None = None,
    ) -> None:
        self._engine = engine
        self._policy = policy or RetryPolicy()
        self._client = client
        self._queue = queue
        self._lost_after = lost_after
        self._sender: ServiceBusSender | None = None
        self._sender_lock = asyncio.Lock()
        self.fired = 0
        self.lags: list[float] = []
        """Seconds between each fire time and the moment its run was started (for figures)."""

    def triggers(self) -> list[tuple[FlowDefinition, str, CronTrigger]]:
        """Every cron trigger of the engine's flows."""
        return [
            (flow, key, trigger)
            for flow in self._engine.flows
            for key, trigger in flow.triggers.items()
            if isinstance(trigger, CronTrigger)
        ]

    def _get_sender(self) -> ServiceBusSender:
        if self._sender is None:
            self._sender = self._client.get_queue_sender(self._queue)
        return self._sender

    async def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                await sender.close()
            except AzureError as exc:
                log.warning("closing the cron sender failed: %s", exc)

    async def _schedule(self, tick: CronTick) -> int:
        try:
            async with self._sender_lock:  # the SDK's async sender is not safe concurrently
                [sequence] = await self._get_sender().schedule_messages(
                    tick.to_message(), tick.fire_time
                )
        except AzureError as exc:
            raise TransportError(
                f"scheduling cron tick {tick.message_id} on queue {self._queue!r} failed: {exc}"
            ) from exc
        return int(sequence)

    async def _cancel(self, sequence: int) -> None:
        try:
            async with self._sender_lock:
                await self._get_sender().cancel_scheduled_messages(sequence)
        except AzureError as exc:
            # Already delivered or cancelled by another replica: if the lost tick turns up after
            # all, the ledger keeps its fire time from starting a second run and duplicate
            # detection merges the chain it continues with the re-seeded one.
            log.info("cancelling cron tick #%d: %s", sequence, exc)

    async def _record_pending(
        self, flow_id: str, key: str, trigger: CronTrigger, tick: CronTick, sequence: int
    ) -> None:
        next_at = tick.fire_time
        async with self._engine.store.transaction() as tx:
            state = await tx.get_schedule_state(flow_id, key) or ScheduleState(flow_id, key)
            if effective_cron(trigger, state.cron_override) != tick.cron:
                # Overridden since this tick was computed: recording it would hide, until it is
                # lost, that the new expression has no chain yet.
                return
            if state.next_fire_at is not None and state.next_fire_at > next_at:
                return  # another replica already chained further ahead
            await tx.put_schedule_state(
                replace(
                    state,
                    next_fire_at=next_at,
                    pending_sequence_number=sequence,
                    updated_at=self._engine.clock.now(),
                )
            )

    # -- the consumer ---------------------------------------------------------------------------

    async def __call__(self, message: ServiceBusReceivedMessage, delivery: Delivery) -> Verdict:
        """Pump handler of the cron queue."""
        try:
            tick = CronTick.from_message(message)
        except EnvelopeError as exc:
            return DeadLetter(REASON_BAD_TICK, str(exc))
        flow = self._engine.flows.find(tick.flow_id)
        trigger = flow.triggers.get(tick.trigger_key) if flow is not None else None
        if flow is None or not isinstance(trigger, CronTrigger):
            return DeadLetter(
                REASON_UNKNOWN_TRIGGER,
                f"no cron trigger {tick.trigger_key!r} on flow {tick.flow_id!r} in this worker",
            )
        try:
            await self._on_tick(flow, tick, trigger)
        except Exception as exc:  # an outage is retried; anything else a few times at most
            return failure_verdict(exc, delivery, self._policy)
        return COMPLETE

    async def _on_tick(self, flow: FlowDefinition, tick: CronTick, trigger: CronTrigger) -> None:
        state = await self._engine.store.get_schedule_state(flow.id, tick.trigger_key)
        cron = effective_cron(trigger, state.cron_override if state else None)
        if tick.cron != cron:
            previous = tick.fire_time - timedelta(microseconds=1)
            if next_fire(cron, previous, trigger.timezone) != tick.fire_time:
                log.info(
                    "dropping cron tick %s of a replaced expression %r", tick.message_id, tick.cron
                )
                return
            # Also a fire time of the new expression: the new chain's tick for this time had the
            # same MessageId and was merged into this one, so this one carries the chain on.
            tick = replace(tick, cron=cron)
        now = self._engine.clock.now()
        following = next_fire(cron, tick.fire_time, trigger.timezone)
        fire_at: datetime | None = tick.fire_time
        if following <= now:
            # The tick is more than one period late (nothing ran for a while): the fires in
            # between were missed, and the trigger's policy decides whether to fire one.
            missed = latest_missed(cron, tick.fire_time, now, trigger.timezone) or tick.fire_time
            fire_at = missed if trigger.missed_fires == "fireOnce" else None
            following = next_fire(cron, now, trigger.timezone)
        # Schedule the next tick before firing this one, so a crash in between loses nothing.
        next_tick = CronTick(flow.id, tick.trigger_key, following, cron)
        sequence = await self._schedule(next_tick)
        await self._record_pending(flow.id, tick.trigger_key, trigger, next_tick, sequence)
        if fire_at is not None:
            result = await self._engine.fire_schedule(flow.id, tick.trigger_key, fire_at)
            if result is not None and result.run_id is not None:
                self.fired += 1
                self.lags.append((self._engine.clock.now() - fire_at).total_seconds())

    # -- seeding ---------------------------------------------------------------------------------

    async def ensure_chains(self) -> int:
        """Seeds every chain with no pending tick, a tick of a replaced expression, or a lost
        tick; fires one missed time first where the policy says ``fireOnce``. Returns how many
        chains were seeded."""
        seeded = 0
        for flow, key, trigger in self.triggers():
            if await self._ensure_chain(flow, key, trigger):
                seeded += 1
        return seeded

    async def _ensure_chain(self, flow: FlowDefinition, key: str, trigger: CronTrigger) -> bool:
        now = self._engine.clock.now()
        state = await self._engine.store.get_schedule_state(flow.id, key)
        cron = effective_cron(trigger, state.cron_override if state else None)
        pending = state.next_fire_at if state else None
        if pending is not None and pending > now - self._lost_after:
            return False
        if pending is not None and state is not None and state.pending_sequence_number is not None:
            # Lost: cancel it in case it turns up. (After an override, ``pending`` is None and
            # the old tick is left to arrive: see the module docstring.)
            await self._cancel(state.pending_sequence_number)
        if state is not None and state.last_fire_at is not None and not state.paused:
            missed = latest_missed(cron, state.last_fire_at, now, trigger.timezone)
            if missed is not None and trigger.missed_fires == "fireOnce":
                log.info("firing missed cron time %s of %s/%s", missed.isoformat(), flow.id, key)
                await self._engine.fire_schedule(flow.id, key, missed)
        following = next_fire(cron, now, trigger.timezone)
        seed = CronTick(flow.id, key, following, cron)
        sequence = await self._schedule(seed)
        await self._record_pending(flow.id, key, trigger, seed, sequence)
        log.info("seeded cron chain %s/%s (%s) at %s", flow.id, key, cron, following.isoformat())
        return True
