"""Statements for claims, the dispatch ledger, the reconciler's scans, the dashboard's run listing
and retention. Like :mod:`floworch.storage.sql.statements`, every builder returns a
:class:`~floworch.storage.sql.compiled.Stmt` whose values are named bind parameters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.sql import Executable

from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.sql.compiled import Stmt, bp, bp_int, key_in, one_of
from floworch.storage.sql.schema import dispatches, runs, steps

PARKED = (str(StepStatus.PENDING), str(StepStatus.WAITING))
RUNNING = str(StepStatus.RUNNING)
_RUN_RUNNING = str(RunStatus.RUNNING)

_STEP_KEY_VALUES = {
    "run_id": steps.c.run_id,
    "step_key": steps.c.step_key,
    "seq": steps.c.seq,
}


def _this_dispatch() -> list[ColumnElement[bool]]:
    return [column == bp(name, column) for name, column in _STEP_KEY_VALUES.items()]


# -- claims -----------------------------------------------------------------------------------


RUN_PREFIX = "run_"
"""Prefix of the run's columns in the RETURNING of a claim that reads the run too."""


def start_step(*, with_run: bool) -> Stmt:
    """Marks a step Running under a lease if it is parked (Pending or Waiting) at ``seq``.

    This conditional update decides a fresh claim: concurrent claimers serialise on the row and
    all but one find it Running. No row back means the dispatch is not claimable that way.
    ``with_run`` returns the run's columns too (``run_<column>``, scalar subqueries: one
    statement instead of two; not on SQL Server, whose OUTPUT clause takes no subquery).
    Values: ``run_id``, ``step_key``, ``seq``, ``owner``, ``lease_until``, ``now``.
    """
    return Stmt(("start_step", with_run), lambda: _start(one_of(steps.c.status, PARKED), with_run))


def _start(condition: ColumnElement[bool], with_run: bool) -> Executable:
    returning: list[Any] = list(steps.c)
    if with_run:
        # Matched on the bound run id, not correlated: SQLite renders RETURNING columns without
        # their table, so "runs.run_id = steps.run_id" would come out as "run_id = run_id".
        run_id = bp("run_id", runs.c.run_id)
        returning += [
            select(column)
            .where(runs.c.run_id == run_id)
            .scalar_subquery()
            .label(RUN_PREFIX + column.name)
            for column in runs.c
        ]
    return (
        update(steps)
        .where(*_this_dispatch(), condition)
        .values(
            status=RUNNING,
            started_at=bp("now", steps.c.started_at),
            lease_owner=bp("owner", steps.c.lease_owner),
            lease_expires_at=bp("lease_until", steps.c.lease_expires_at),
        )
        .returning(*returning)
    )


def take_over_step(*, with_run: bool) -> Stmt:
    """Gives a Running step at ``seq`` whose lease lapsed (or that has none) to a new owner.
    Same values and columns as :func:`start_step`."""
    return Stmt(("take_over_step", with_run), lambda: _start(_lease_lapsed(), with_run))


def _lease_lapsed() -> ColumnElement[bool]:
    return and_(
        steps.c.status == RUNNING,
        or_(
            steps.c.lease_expires_at.is_(None),
            steps.c.lease_expires_at <= bp("now", steps.c.lease_expires_at),
        ),
    )


def classify_claim() -> Stmt:
    """Why a claim failed: does the run exist, and where is the step (status, seq).
    Values: ``run_id``, ``step_key``."""
    return _CLASSIFY_CLAIM


_CLASSIFY_CLAIM = Stmt(
    "classify_claim",
    lambda: (
        select(runs.c.run_id, steps.c.status, steps.c.seq)
        .select_from(
            runs.outerjoin(
                steps,
                and_(
                    steps.c.run_id == runs.c.run_id,
                    steps.c.step_key == bp("step_key", steps.c.step_key),
                ),
            )
        )
        .where(runs.c.run_id == bp("run_id", runs.c.run_id))
    ),
)


def renew_step_lease() -> Stmt:
    """Extends the lease of a step still Running at ``seq`` under ``owner`` (row count 0 = the
    caller lost it). Values: ``run_id``, ``step_key``, ``seq``, ``owner``, ``lease_until``."""
    return _RENEW_STEP_LEASE


_RENEW_STEP_LEASE = Stmt(
    "renew_step_lease",
    lambda: (
        update(steps)
        .where(
            *_this_dispatch(),
            steps.c.status == RUNNING,
            steps.c.lease_owner == bp("owner", steps.c.lease_owner),
        )
        .values(lease_expires_at=bp("lease_until", steps.c.lease_expires_at))
    ),
)


def select_run_status() -> Stmt:
    """A run's status. Values: ``run_id``."""
    return _SELECT_RUN_STATUS


_SELECT_RUN_STATUS = Stmt(
    "select_run_status",
    lambda: select(runs.c.status).where(runs.c.run_id == bp("run_id", runs.c.run_id)),
)


# -- dispatch ledger --------------------------------------------------------------------------


def mark_dispatched_in(count: int) -> Stmt:
    """Marks ``count`` ledger rows sent in one statement (row-value ``IN``: PostgreSQL and
    SQLite). Values: ``sent_at``, and ``r<i>``, ``s<i>``, ``q<i>`` per key."""

    def build() -> Executable:
        d = dispatches.c
        keys = [
            tuple_(bp(f"r{i}", d.run_id), bp(f"s{i}", d.step_key), bp(f"q{i}", d.seq))
            for i in range(count)
        ]
        return (
            update(dispatches)
            .where(tuple_(d.run_id, d.step_key, d.seq).in_(keys), d.sent_at.is_(None))
            .values(sent_at=bp("sent_at", d.sent_at))
        )

    return Stmt(("mark_dispatched_in", count), build)


def mark_dispatched_each() -> Stmt:
    """Marks one ledger row sent; run with one parameter set per key (SQL Server has no
    row-value ``IN``). Values: ``run_id``, ``step_key``, ``seq``, ``sent_at``."""
    return _MARK_DISPATCHED_EACH


_MARK_DISPATCHED_EACH = Stmt(
    "mark_dispatched_each",
    lambda: (
        update(dispatches)
        .where(
            dispatches.c.run_id == bp("run_id", dispatches.c.run_id),
            dispatches.c.step_key == bp("step_key", dispatches.c.step_key),
            dispatches.c.seq == bp("seq", dispatches.c.seq),
            dispatches.c.sent_at.is_(None),
        )
        .values(sent_at=bp("sent_at", dispatches.c.sent_at))
    ),
)


def _step_parked_at_ledger_seq() -> ColumnElement[bool]:
    return exists().where(
        steps.c.run_id == dispatches.c.run_id,
        steps.c.step_key == dispatches.c.step_key,
        steps.c.seq == dispatches.c.seq,
        one_of(steps.c.status, PARKED),
    )


def select_due_dispatches() -> Stmt:
    """Ledger rows to (re)send: unsent and past the grace, or sent long ago with the step still
    parked at that seq (the message was lost). Values: ``unsent_grace_until``,
    ``sent_stuck_before``, ``limit``."""
    return _SELECT_DUE_DISPATCHES


_D = dispatches.c
_SELECT_DUE_DISPATCHES = Stmt(
    "select_due_dispatches",
    lambda: (
        select(dispatches)
        .where(
            or_(
                and_(_D.sent_at.is_(None), _D.due_at <= bp("unsent_grace_until", _D.due_at)),
                and_(_D.sent_at.is_not(None), _D.due_at <= bp("sent_stuck_before", _D.due_at)),
            ),
            _step_parked_at_ledger_seq(),
        )
        .order_by(_D.due_at, _D.run_id, _D.step_key)
        .limit(bp_int("limit"))
    ),
)


def delete_settled_dispatches() -> Stmt:
    """Drops sent rows whose step moved on: they can never be due again (keeps scans short)."""
    return _DELETE_SETTLED_DISPATCHES


_DELETE_SETTLED_DISPATCHES = Stmt(
    "delete_settled_dispatches",
    lambda: delete(dispatches).where(_D.sent_at.is_not(None), ~_step_parked_at_ledger_seq()),
)


# -- reconciler scans -------------------------------------------------------------------------


def select_expired_leases() -> Stmt:
    """Running steps of running runs whose lease lapsed. Values: ``now``, ``limit``."""
    return _SELECT_EXPIRED_LEASES


_SELECT_EXPIRED_LEASES = Stmt(
    "select_expired_leases",
    lambda: (
        select(steps)
        .join(runs, runs.c.run_id == steps.c.run_id)
        .where(
            steps.c.status == RUNNING,
            steps.c.lease_expires_at <= bp("now", steps.c.lease_expires_at),
            runs.c.status == _RUN_RUNNING,
        )
        .order_by(steps.c.lease_expires_at, steps.c.id)
        .limit(bp_int("limit"))
    ),
)


def select_runs_past_timeout() -> Stmt:
    """Running runs past their deadline. Values: ``now``, ``limit``."""
    return _SELECT_RUNS_PAST_TIMEOUT


_SELECT_RUNS_PAST_TIMEOUT = Stmt(
    "select_runs_past_timeout",
    lambda: (
        select(runs)
        .where(runs.c.status == _RUN_RUNNING, runs.c.timeout_at <= bp("now", runs.c.timeout_at))
        .order_by(runs.c.timeout_at, runs.c.run_id)
        .limit(bp_int("limit"))
    ),
)


def select_unfinished_runs() -> Stmt:
    """Running runs by id after ``after_run_id`` (keyset paging for resume). Values:
    ``after_run_id``, ``limit``."""
    return _SELECT_UNFINISHED_RUNS


_SELECT_UNFINISHED_RUNS = Stmt(
    "select_unfinished_runs",
    lambda: (
        select(runs)
        .where(runs.c.status == _RUN_RUNNING, runs.c.run_id > bp("after_run_id", runs.c.run_id))
        .order_by(runs.c.run_id)
        .limit(bp_int("limit"))
    ),
)


# -- dashboard --------------------------------------------------------------------------------


def _run_filters(flow: bool, statuses: int, after: bool, before: bool) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if flow:
        where.append(runs.c.flow_id == bp("flow_id", runs.c.flow_id))
    if statuses:
        where.append(key_in(runs.c.status, "st", statuses))
    if after:
        where.append(runs.c.created_at >= bp("created_after", runs.c.created_at))
    if before:
        where.append(runs.c.created_at < bp("created_before", runs.c.created_at))
    return where


def select_runs(*, flow: bool, statuses: int, after: bool, before: bool) -> Stmt:
    """Runs matching the filters named, newest first, one page. Values: ``flow_id``,
    ``st0`` .. (statuses), ``created_after``, ``created_before``, ``limit``, ``offset``."""
    return Stmt(
        ("select_runs", flow, statuses, after, before),
        lambda: (
            select(runs)
            .where(*_run_filters(flow, statuses, after, before))
            .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
            .offset(bp_int("offset"))
            .limit(bp_int("limit"))
        ),
    )


def count_runs(*, flow: bool, statuses: int, after: bool, before: bool) -> Stmt:
    """How many runs match the filters named (values as :func:`select_runs`, no paging)."""
    return Stmt(
        ("count_runs", flow, statuses, after, before),
        lambda: (
            select(func.count())
            .select_from(runs)
            .where(*_run_filters(flow, statuses, after, before))
        ),
    )


# -- retention --------------------------------------------------------------------------------


def select_prunable_runs() -> Stmt:
    """Ids of finished runs completed before the cut-off, oldest first, one batch. Values:
    ``completed_before``, ``limit``."""
    return _SELECT_PRUNABLE_RUNS


_SELECT_PRUNABLE_RUNS = Stmt(
    "select_prunable_runs",
    lambda: (
        select(runs.c.run_id)
        .where(
            runs.c.status != _RUN_RUNNING,
            runs.c.completed_at.is_not(None),
            runs.c.completed_at < bp("completed_before", runs.c.completed_at),
        )
        .order_by(runs.c.completed_at, runs.c.run_id)
        .limit(bp_int("limit"))
    ),
)


def delete_by_runs(table: Table, count: int) -> Stmt:
    """Deletes every row of ``table`` owned by ``count`` runs. Values: ``r0`` .."""
    return Stmt(
        ("delete_by_runs", table.name, count),
        lambda: delete(table).where(key_in(table.c.run_id, "r", count)),
    )
