"""The claim of a step dispatch and its lease, decided on the step row.

A claim is one conditional update of the step row, run on its own (it commits by itself): the
step must be at the message's ``seq`` and parked (Pending or Waiting: a fresh claim), or Running
under a lease that lapsed (or none: a takeover). Concurrent claimers of one dispatch serialise on
that row; the first changes it to Running under its lease, and every other one then finds the
row no longer matching (PostgreSQL and SQL Server re-check the condition on the row the winner
committed; SQLite has one writer at a time). The lease lives on the step row
(``lease_owner``, ``lease_expires_at``), so the claim needs no other table; the ``claims`` table
of the first schema revision is no longer written.

A claim that did not succeed reads once to say why (stale, already claimed, run not found).

The claim commits without waiting for the disk (:meth:`SqlConnection.execute_unflushed`). A
crash of the process never loses it; a power loss or a crash of the database server before the
step's completion committed may, and then the step is Pending again at its seq and the
reconciler sends it once more: the handler runs again, as after a worker that died mid-step
(handlers run at least once). The completion transaction commits durably, and with it the claim.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from floworch.model.statuses import RunStatus
from floworch.storage.records import ClaimOutcome, ClaimResult, StepRecord
from floworch.storage.sql import rows
from floworch.storage.sql import scan_statements as sc
from floworch.storage.sql import statements as st
from floworch.storage.sql.database import SqlConnection


async def claim_on(
    conn: SqlConnection,
    run_id: str,
    step_key: str,
    seq: int,
    *,
    owner: str,
    lease_until: datetime,
    now: datetime,
    outputs: Collection[str] = (),
) -> ClaimResult:
    """Claims dispatch ``seq`` of a step with statements that each commit on their own, and
    reads the step rows ``outputs`` right after (on PostgreSQL in the claim's round trip)."""
    values = {
        "run_id": run_id,
        "step_key": step_key,
        "seq": seq,
        "owner": owner,
        "lease_until": lease_until,
        "now": now,
    }
    with_run = conn.dialect_name in st.ON_CONFLICT_DIALECTS
    reads = st.step_reads(run_id, outputs)
    result, *found = await conn.execute_unflushed(
        sc.start_step(with_run=with_run), values, reads=reads
    )
    outcome = ClaimOutcome.ACQUIRED
    if not result.rows:
        result, *found = await conn.execute_unflushed(
            sc.take_over_step(with_run=with_run), values, reads=reads
        )
        outcome = ClaimOutcome.TAKEN_OVER
    step = result.first()
    if step is None:
        return ClaimResult(await _why(conn, run_id, step_key, seq))
    claimed = rows.mapping(result.columns, step)
    if with_run:
        run = {
            name[len(sc.RUN_PREFIX) :]: value
            for name, value in claimed.items()
            if name.startswith(sc.RUN_PREFIX)
        }
    else:
        run_row = await conn.execute(st.select_run(), {"run_id": run_id})
        first = run_row.first()
        if first is None:  # pragma: no cover - the step row references its run
            return ClaimResult(ClaimOutcome.RUN_NOT_FOUND)
        run = rows.mapping(run_row.columns, first)
    rows_read: dict[str, StepRecord] = {}
    for read in found:
        rows_read.update(rows.steps_in(read.columns, read.rows))
    return ClaimResult(outcome, run=rows.to_run(run), step=rows.to_step(claimed), outputs=rows_read)


async def _why(conn: SqlConnection, run_id: str, step_key: str, seq: int) -> str:
    values = {"run_id": run_id, "step_key": step_key}
    found = (await conn.execute(sc.classify_claim(), values)).first()
    if found is None:
        return ClaimOutcome.RUN_NOT_FOUND
    _, status, step_seq = found
    if status == sc.RUNNING and step_seq == seq:
        return ClaimOutcome.ALREADY_CLAIMED
    return ClaimOutcome.STALE


async def renew_on(
    conn: SqlConnection,
    run_id: str,
    step_key: str,
    seq: int,
    owner: str,
    lease_until: datetime,
) -> RunStatus | None:
    """Extends the caller's lease (one statement); None = the caller no longer holds it."""
    values = {
        "run_id": run_id,
        "step_key": step_key,
        "seq": seq,
        "owner": owner,
        "lease_until": lease_until,
    }
    renewed = await conn.execute(sc.renew_step_lease(), values)
    if renewed.rowcount != 1:
        return None
    status = (await conn.execute(sc.select_run_status(), {"run_id": run_id})).scalar()
    return None if status is None else RunStatus(status)
