"""The claim of a step dispatch and its lease, each in one short transaction.

A claim is a row in ``claims`` keyed by (run, step, seq). Inserting it is the mutual exclusion:
the database makes concurrent inserters of one key wait for the first and then skip (or, on SQL
Server, fail with a duplicate key inside a savepoint). The conditional update of the step row
(right seq, right status) then decides whether the dispatch is still current. Failure paths
roll back and read once to say why (stale, already claimed, run not found).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from floworch.model.statuses import RunStatus
from floworch.storage.records import ClaimOutcome, ClaimResult
from floworch.storage.sql import rows
from floworch.storage.sql import scan_statements as sc
from floworch.storage.sql import statements as st
from floworch.storage.sql.schema import claims
from floworch.storage.sql.writes import insert_once


class ClaimRefused(Exception):
    """Rolls the claim's transaction back and carries the answer out."""

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome


async def claim_in(
    conn: AsyncConnection,
    run_id: str,
    step_key: str,
    seq: int,
    *,
    owner: str,
    lease_until: datetime,
    now: datetime,
) -> ClaimResult:
    """Runs the claim on ``conn`` inside an open transaction.

    Raises:
        ClaimRefused: the claim did not succeed; the caller must roll back (the claim row this
            transaction may have inserted must not survive) and report ``outcome``.
    """
    row = st.claim_key(run_id, step_key, seq) | {
        "owner": owner,
        "lease_until": lease_until,
        "claimed_at": now,
    }
    if await insert_once(conn, claims, [row]):
        step = await _start(
            conn, run_id, step_key, seq, sc.PARKED, owner=owner, lease_until=lease_until, now=now
        )
        outcome = ClaimOutcome.ACQUIRED
        if step is None:
            # Running with no claim row (its claim was deleted): memory semantics = takeover.
            step = await _start(
                conn,
                run_id,
                step_key,
                seq,
                (sc.RUNNING,),
                owner=owner,
                lease_until=lease_until,
                now=now,
            )
            outcome = ClaimOutcome.TAKEN_OVER
    else:
        # A claim exists. A step parked again at this seq is claimable regardless of it.
        step = await _start(
            conn, run_id, step_key, seq, sc.PARKED, owner=owner, lease_until=lease_until, now=now
        )
        outcome = ClaimOutcome.ACQUIRED
        if step is not None:
            await conn.execute(
                sc.overwrite_claim(
                    run_id, step_key, seq, owner=owner, lease_until=lease_until, now=now
                )
            )
        else:
            taken = await conn.execute(
                sc.take_over_claim(
                    run_id, step_key, seq, owner=owner, lease_until=lease_until, now=now
                )
            )
            if taken.rowcount != 1:
                raise ClaimRefused(await _why(conn, run_id, step_key, seq, lease_alive=True))
            step = await _start(
                conn,
                run_id,
                step_key,
                seq,
                (sc.RUNNING,),
                owner=owner,
                lease_until=lease_until,
                now=now,
            )
            outcome = ClaimOutcome.TAKEN_OVER
    if step is None:
        raise ClaimRefused(await _why(conn, run_id, step_key, seq, lease_alive=False))
    run_row = (await conn.execute(st.select_run(run_id))).mappings().first()
    if run_row is None:  # pragma: no cover - the step row references its run
        raise ClaimRefused(ClaimOutcome.RUN_NOT_FOUND)
    return ClaimResult(outcome, run=rows.to_run(run_row), step=rows.to_step(step))


async def _start(
    conn: AsyncConnection,
    run_id: str,
    step_key: str,
    seq: int,
    from_statuses: tuple[str, ...],
    *,
    owner: str,
    lease_until: datetime,
    now: datetime,
) -> RowMapping | None:
    stmt = sc.start_step(
        run_id,
        step_key,
        seq,
        from_statuses=from_statuses,
        owner=owner,
        lease_until=lease_until,
        now=now,
    )
    return (await conn.execute(stmt)).mappings().first()


async def _why(
    conn: AsyncConnection, run_id: str, step_key: str, seq: int, *, lease_alive: bool
) -> str:
    found = (await conn.execute(sc.classify_claim(run_id, step_key))).first()
    if found is None:
        return ClaimOutcome.RUN_NOT_FOUND
    _, status, step_seq = found
    if lease_alive and status == sc.RUNNING and step_seq == seq:
        return ClaimOutcome.ALREADY_CLAIMED
    return ClaimOutcome.STALE


async def renew_in(
    conn: AsyncConnection,
    run_id: str,
    step_key: str,
    seq: int,
    owner: str,
    lease_until: datetime,
) -> RunStatus | None:
    """Extends the caller's lease inside an open transaction; None = the caller lost it.

    Raises:
        ClaimRefused: the lease is lost after a write; the caller must roll back.
    """
    claimed = await conn.execute(sc.renew_claim(run_id, step_key, seq, owner, lease_until))
    if claimed.rowcount != 1:
        return None
    step = await conn.execute(sc.renew_step_lease(run_id, step_key, seq, owner, lease_until))
    if step.rowcount != 1:
        raise ClaimRefused("lost")
    status = await conn.scalar(sc.select_run_status(run_id))
    return None if status is None else RunStatus(status)
