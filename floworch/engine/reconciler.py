"""The reconciler: finds work that fell through the cracks and puts it back on track.

It sends ledger rows whose message was never sent, dispatches again (under a new seq, so with a
new message id, and with a growing back-off) steps whose message got lost, takes over steps whose
worker died (the lease lapsed), and times out runs past their deadline. Hosts run it at start-up and
periodically, so no run stays stuck (the reference engine recovered only at start-up).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from floworch.engine.core import EngineCore, Send
from floworch.engine.envelope import StepEnvelope
from floworch.engine.transition import Transition
from floworch.errors import RunNotFoundError
from floworch.model import FlowDefinition
from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.records import DispatchRecord, step_changes

log = logging.getLogger("floworch.reconciler")

_PARKED = (StepStatus.PENDING, StepStatus.WAITING)


@dataclass(frozen=True)
class ReconcileReport:
    """What one pass did.

    Attributes:
        resent: ledger rows whose message had never been sent, sent now (same message id).
        redispatched: steps whose message was sent but never picked up (lost), dispatched
            again under a new seq, so the new message has a new id.
        taken_over: running steps whose worker stopped renewing the lease, dispatched again.
        timed_out: runs ended because they passed their timeout.
    """

    resent: int = 0
    taken_over: int = 0
    timed_out: int = 0
    redispatched: int = 0

    @property
    def anything(self) -> bool:
        """Whether the pass changed anything."""
        return bool(self.resent or self.taken_over or self.timed_out or self.redispatched)


@dataclass(frozen=True)
class ReconcilerSettings:
    """How eager the reconciler is.

    Attributes:
        unsent_grace: an unsent ledger row younger than this is left to its own sender.
        lost_after: a sent message whose step has not started this long after it was due is
            considered lost and the step is dispatched again (a new seq, so a new message id).
        max_redispatch_backoff: the longest wait before a redispatched message is itself
            considered lost. Each redispatch of a step waits as long as the step had already
            waited (at least ``lost_after``), so a long backlog does not make the reconciler
            replace every queued message with a newer one over and over.
        batch: rows per scan.
    """

    unsent_grace: timedelta = timedelta(seconds=5)
    lost_after: timedelta = timedelta(seconds=60)
    max_redispatch_backoff: timedelta = timedelta(hours=1)
    batch: int = 500


async def reconcile(
    core: EngineCore,
    time_out_run: Callable[[str], Awaitable[bool]],
    settings: ReconcilerSettings | None = None,
) -> ReconcileReport:
    """Runs one reconciliation pass."""
    settings = settings or ReconcilerSettings()
    now = core.clock.now()
    resent, redispatched = await _resend(core, now, settings)
    taken = await _take_over(core, now, settings)
    timed_out = 0
    for run in await core.store.runs_past_timeout(now, limit=settings.batch):
        if await time_out_run(run.run_id):
            timed_out += 1
    report = ReconcileReport(resent, taken, timed_out, redispatched)
    core.telemetry.reconciled(resent, redispatched, taken, timed_out)
    if report.anything:
        log.info("reconciler: %s", report)
    return report


async def _resend(core: EngineCore, now: datetime, settings: ReconcilerSettings) -> tuple[int, int]:
    rows = await core.store.due_dispatches(
        now,
        unsent_grace_until=now - settings.unsent_grace,
        sent_stuck_before=now - settings.lost_after,
        limit=settings.batch,
    )
    sends: list[Send] = []
    redispatched = 0
    for row in rows:
        flow = core.flows.find(row.flow_id)
        if flow is None:
            continue
        if row.sent_at is not None:
            # Sent, yet the step is still parked at that seq: the message was lost.
            if await _redispatch_lost(core, flow, row, now, settings):
                redispatched += 1
            continue
        run = await core.store.get_run(row.run_id)
        if run is None or run.status != RunStatus.RUNNING:
            continue
        node = flow.node(row.step_key)
        envelope = StepEnvelope(
            flow_id=row.flow_id,
            run_id=row.run_id,
            step_key=row.step_key,
            step_type=node.type,
            seq=row.seq,
            flow_version=flow.version,
            trace_context=run.trace_context,
        )
        sends.append((envelope, row.due_at if row.due_at > now else None))
    await core.send(sends)
    return len(sends), redispatched


async def _redispatch_lost(
    core: EngineCore,
    flow: FlowDefinition,
    row: DispatchRecord,
    now: datetime,
    settings: ReconcilerSettings,
) -> bool:
    """Dispatches a step again under a new seq, in the run's transaction (like a take-over).

    Resending the same message id would be dropped by duplicate detection, and the row would
    look lost again at every pass. A step that waits with no due time (for a signal, or for its
    ForEach iterations) is not lost at all: its seq is only moved past the ledger row.
    """
    key = row.step_key
    try:
        async with core.store.run_transaction(row.run_id) as tx:
            run = await tx.get_run(row.run_id)
            if run is None or run.status != RunStatus.RUNNING:
                return False
            step = (await tx.get_steps(row.run_id, [key])).get(key)
            if step is None or step.seq != row.seq or step.status not in _PARKED:
                return False
            new_seq = row.seq + 1
            updated = await tx.update_step(
                row.run_id,
                key,
                step_changes(seq=new_seq),
                expect_seq=row.seq,
                expect_statuses=_PARKED,
            )
            if updated is None:
                return False
            if step.status == StepStatus.WAITING and step.due_at is None:
                return False  # parked before parking moved seqs (older floworch); not lost
            t = Transition(core, tx, flow, run, now)
            waited = now - (step.due_at or row.due_at)
            backoff = min(max(waited, settings.lost_after), settings.max_redispatch_backoff)
            await t.redispatch(key, step.step_type, new_seq, now + backoff - settings.lost_after)
            old_id = f"{row.run_id}:{key}:{row.seq}"
            t.event(
                "StepRedispatched",
                key,
                f"message {old_id} was not picked up {waited.total_seconds():.0f}s after it "
                f"was due; dispatched again as seq {new_seq}",
            )
            await t.flush()
    except RunNotFoundError:
        return False
    await t.after_commit()
    return True


async def _take_over(core: EngineCore, now: datetime, settings: ReconcilerSettings) -> int:
    count = 0
    for step in await core.store.expired_leases(now, limit=settings.batch):
        run = await core.store.get_run(step.run_id)
        flow = core.flows.find(run.flow_id) if run is not None else None
        if run is None or flow is None:
            continue
        async with core.store.run_transaction(step.run_id) as tx:
            current = await tx.get_run(step.run_id)
            assert current is not None
            t = Transition(core, tx, flow, current, now)
            updated = await tx.update_step(
                step.run_id,
                step.step_key,
                step_changes(
                    status=StepStatus.PENDING,
                    seq=step.seq + 1,
                    lease_owner=None,
                    lease_expires_at=None,
                    due_at=now,
                ),
                expect_seq=step.seq,
                expect_statuses=(StepStatus.RUNNING,),
            )
            if updated is None:
                continue
            await t.ledger([(step.step_key, step.step_type, step.seq + 1, now)])
            t.event(
                "StepLeaseExpired",
                step.step_key,
                f"worker {step.lease_owner} stopped renewing; dispatched again",
            )
            await t.flush()
        await t.after_commit()
        count += 1
    return count
