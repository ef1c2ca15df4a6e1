"""The reconciler: finds work that fell through the cracks and puts it back on track.

It re-sends ledger rows whose message was never sent or got lost, takes over steps whose worker
died (the lease lapsed), and times out runs past their deadline. Hosts run it at start-up and
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
from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.records import step_changes

log = logging.getLogger("floworch.reconciler")


@dataclass(frozen=True)
class ReconcileReport:
    """What one pass did."""

    resent: int = 0
    taken_over: int = 0
    timed_out: int = 0

    @property
    def anything(self) -> bool:
        """Whether the pass changed anything."""
        return bool(self.resent or self.taken_over or self.timed_out)


@dataclass(frozen=True)
class ReconcilerSettings:
    """How eager the reconciler is.

    Attributes:
        unsent_grace: an unsent ledger row younger than this is left to its own sender.
        lost_after: a sent message whose step has not started this long after it was due is
            considered lost and sent again (duplicates are harmless: the claim filters them).
        batch: rows per scan.
    """

    unsent_grace: timedelta = timedelta(seconds=5)
    lost_after: timedelta = timedelta(seconds=60)
    batch: int = 500


async def reconcile(
    core: EngineCore,
    time_out_run: Callable[[str], Awaitable[bool]],
    settings: ReconcilerSettings | None = None,
) -> ReconcileReport:
    """Runs one reconciliation pass."""
    settings = settings or ReconcilerSettings()
    now = core.clock.now()
    resent = await _resend(core, now, settings)
    taken = await _take_over(core, now, settings)
    timed_out = 0
    for run in await core.store.runs_past_timeout(now, limit=settings.batch):
        if await time_out_run(run.run_id):
            timed_out += 1
    report = ReconcileReport(resent, taken, timed_out)
    if report.anything:
        log.info("reconciler: %s", report)
    return report


async def _resend(core: EngineCore, now: datetime, settings: ReconcilerSettings) -> int:
    rows = await core.store.due_dispatches(
        now,
        unsent_grace_until=now - settings.unsent_grace,
        sent_stuck_before=now - settings.lost_after,
        limit=settings.batch,
    )
    sends: list[Send] = []
    for row in rows:
        flow = core.flows.find(row.flow_id)
        if flow is None:
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
    return len(sends)


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
        await core.send(t.sends)
        count += 1
    return count
