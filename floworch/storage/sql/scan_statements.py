"""Statement builders for claims, the dispatch ledger, the reconciler's scans, the dashboard's
run listing and retention. Like :mod:`floworch.storage.sql.statements`, every builder returns a
Core statement so the unit tests compile each one for every dialect.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)

from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.records import RunQuery
from floworch.storage.sql.schema import claims, dispatches, runs, steps

PARKED = (str(StepStatus.PENDING), str(StepStatus.WAITING))
RUNNING = str(StepStatus.RUNNING)


# -- claims -----------------------------------------------------------------------------------


def start_step(
    run_id: str,
    step_key: str,
    seq: int,
    *,
    from_statuses: Sequence[str],
    owner: str,
    lease_until: datetime,
    now: datetime,
) -> Update:
    """Marks a step Running under a lease if it is at ``seq`` in one of ``from_statuses``.

    This conditional update decides a claim: returning no row means the dispatch is stale.
    """
    return (
        update(steps)
        .where(
            steps.c.run_id == run_id,
            steps.c.step_key == step_key,
            steps.c.seq == seq,
            steps.c.status.in_(list(from_statuses)),
        )
        .values(status=RUNNING, started_at=now, lease_owner=owner, lease_expires_at=lease_until)
        .returning(*steps.c)
    )


def take_over_claim(
    run_id: str, step_key: str, seq: int, *, owner: str, lease_until: datetime, now: datetime
) -> Update:
    """Moves a claim whose lease lapsed to a new owner (the caller checks row count)."""
    return (
        update(claims)
        .where(
            claims.c.run_id == run_id,
            claims.c.step_key == step_key,
            claims.c.seq == seq,
            claims.c.lease_until <= now,
        )
        .values(owner=owner, lease_until=lease_until, claimed_at=now)
    )


def overwrite_claim(
    run_id: str, step_key: str, seq: int, *, owner: str, lease_until: datetime, now: datetime
) -> Update:
    """Gives a claim to a new owner unconditionally (the step was parked again at this seq)."""
    return (
        update(claims)
        .where(claims.c.run_id == run_id, claims.c.step_key == step_key, claims.c.seq == seq)
        .values(owner=owner, lease_until=lease_until, claimed_at=now)
    )


def classify_claim(run_id: str, step_key: str) -> Select[Any]:
    """Why a claim failed: does the run exist, and where is the step (status, seq)."""
    return (
        select(runs.c.run_id, steps.c.status, steps.c.seq)
        .select_from(
            runs.outerjoin(
                steps, and_(steps.c.run_id == runs.c.run_id, steps.c.step_key == step_key)
            )
        )
        .where(runs.c.run_id == run_id)
    )


def select_step_status(run_id: str, step_key: str) -> Select[Any]:
    """A step's status and seq."""
    return select(steps.c.status, steps.c.seq).where(
        steps.c.run_id == run_id, steps.c.step_key == step_key
    )


def renew_claim(run_id: str, step_key: str, seq: int, owner: str, lease_until: datetime) -> Update:
    """Extends the caller's own claim (row count 0 = the caller lost it)."""
    return (
        update(claims)
        .where(
            claims.c.run_id == run_id,
            claims.c.step_key == step_key,
            claims.c.seq == seq,
            claims.c.owner == owner,
        )
        .values(lease_until=lease_until)
    )


def renew_step_lease(
    run_id: str, step_key: str, seq: int, owner: str, lease_until: datetime
) -> Update:
    """Extends the step's copy of the lease while it still runs under the caller."""
    return (
        update(steps)
        .where(
            steps.c.run_id == run_id,
            steps.c.step_key == step_key,
            steps.c.seq == seq,
            steps.c.status == RUNNING,
            steps.c.lease_owner == owner,
        )
        .values(lease_expires_at=lease_until)
    )


def select_run_status(run_id: str) -> Select[Any]:
    """A run's status."""
    return select(runs.c.status).where(runs.c.run_id == run_id)


# -- dispatch ledger --------------------------------------------------------------------------


def select_existing_dispatch_keys(run_ids: Collection[str]) -> Select[Any]:
    """Ledger keys of some runs (SQL Server's insert-once filters a batch with it first)."""
    return select(dispatches.c.run_id, dispatches.c.step_key, dispatches.c.seq).where(
        dispatches.c.run_id.in_(list(run_ids))
    )


def mark_dispatched_in(keys: Sequence[tuple[str, str, int]], sent_at: datetime) -> Update:
    """Marks ledger rows sent in one statement (row-value ``IN``: PostgreSQL and SQLite)."""
    return (
        update(dispatches)
        .where(
            tuple_(dispatches.c.run_id, dispatches.c.step_key, dispatches.c.seq).in_(list(keys)),
            dispatches.c.sent_at.is_(None),
        )
        .values(sent_at=sent_at)
    )


def mark_dispatched_each() -> Update:
    """Marks one ledger row sent; run with one parameter set per key (SQL Server has no
    row-value ``IN``). Parameters: ``k_run``, ``k_step``, ``k_seq``, ``k_sent``."""
    return (
        update(dispatches)
        .where(
            dispatches.c.run_id == bindparam("k_run"),
            dispatches.c.step_key == bindparam("k_step"),
            dispatches.c.seq == bindparam("k_seq"),
            dispatches.c.sent_at.is_(None),
        )
        .values(sent_at=bindparam("k_sent"))
    )


def _step_parked_at_ledger_seq() -> ColumnElement[bool]:
    return exists().where(
        steps.c.run_id == dispatches.c.run_id,
        steps.c.step_key == dispatches.c.step_key,
        steps.c.seq == dispatches.c.seq,
        steps.c.status.in_(PARKED),
    )


def select_due_dispatches(
    *, unsent_grace_until: datetime, sent_stuck_before: datetime, limit: int
) -> Select[Any]:
    """Ledger rows to (re)send: unsent and past the grace, or sent long ago with the step still
    parked at that seq (the message was lost)."""
    return (
        select(dispatches)
        .where(
            or_(
                and_(dispatches.c.sent_at.is_(None), dispatches.c.due_at <= unsent_grace_until),
                and_(dispatches.c.sent_at.is_not(None), dispatches.c.due_at <= sent_stuck_before),
            ),
            _step_parked_at_ledger_seq(),
        )
        .order_by(dispatches.c.due_at, dispatches.c.run_id, dispatches.c.step_key)
        .limit(limit)
    )


def delete_settled_dispatches() -> Delete:
    """Drops sent rows whose step moved on: they can never be due again (keeps scans short)."""
    return delete(dispatches).where(
        dispatches.c.sent_at.is_not(None), ~_step_parked_at_ledger_seq()
    )


# -- reconciler scans -------------------------------------------------------------------------


def select_expired_leases(now: datetime, limit: int) -> Select[Any]:
    """Running steps of running runs whose lease lapsed."""
    return (
        select(steps)
        .join(runs, runs.c.run_id == steps.c.run_id)
        .where(
            steps.c.status == RUNNING,
            steps.c.lease_expires_at <= now,
            runs.c.status == str(RunStatus.RUNNING),
        )
        .order_by(steps.c.lease_expires_at, steps.c.id)
        .limit(limit)
    )


def select_runs_past_timeout(now: datetime, limit: int) -> Select[Any]:
    """Running runs past their deadline."""
    return (
        select(runs)
        .where(runs.c.status == str(RunStatus.RUNNING), runs.c.timeout_at <= now)
        .order_by(runs.c.timeout_at, runs.c.run_id)
        .limit(limit)
    )


def select_unfinished_runs(limit: int, after_run_id: str) -> Select[Any]:
    """Running runs by id, after ``after_run_id`` (keyset paging for resume)."""
    return (
        select(runs)
        .where(runs.c.status == str(RunStatus.RUNNING), runs.c.run_id > after_run_id)
        .order_by(runs.c.run_id)
        .limit(limit)
    )


# -- dashboard --------------------------------------------------------------------------------


def _run_filters(query: RunQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.flow_id is not None:
        where.append(runs.c.flow_id == query.flow_id)
    if query.statuses:
        where.append(runs.c.status.in_(sorted(str(s) for s in query.statuses)))
    if query.created_after is not None:
        where.append(runs.c.created_at >= query.created_after)
    if query.created_before is not None:
        where.append(runs.c.created_at < query.created_before)
    return where


def select_runs(query: RunQuery) -> Select[Any]:
    """Runs matching ``query``, newest first, one page."""
    return (
        select(runs)
        .where(*_run_filters(query))
        .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        .offset(query.offset)
        .limit(query.limit)
    )


def count_runs(query: RunQuery) -> Select[Any]:
    """How many runs match ``query``."""
    return select(func.count()).select_from(runs).where(*_run_filters(query))


# -- retention --------------------------------------------------------------------------------


def select_prunable_runs(completed_before: datetime, batch_size: int) -> Select[Any]:
    """Ids of finished runs completed before the cut-off, oldest first, one batch."""
    return (
        select(runs.c.run_id)
        .where(
            runs.c.status != str(RunStatus.RUNNING),
            runs.c.completed_at.is_not(None),
            runs.c.completed_at < completed_before,
        )
        .order_by(runs.c.completed_at, runs.c.run_id)
        .limit(batch_size)
    )


def delete_by_runs(table: Table, run_ids: Collection[str]) -> Delete:
    """Deletes every row of ``table`` owned by the given runs."""
    return delete(table).where(table.c.run_id.in_(list(run_ids)))
