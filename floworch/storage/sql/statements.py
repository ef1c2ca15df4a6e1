"""Statement builders for the transaction operations: every SQL statement the adapter issues
inside a :class:`~floworch.storage.sql.tx.SqlTx` is built by a function here.

Builders return SQLAlchemy Core statements (compiled per dialect, never SQL strings), so the unit
tests compile each one for SQL Server, PostgreSQL and SQLite without a server. Builders whose
SQL depends on the database take ``dialect`` (the SQLAlchemy dialect name): PostgreSQL and SQLite
get ``INSERT ... ON CONFLICT``; SQL Server gets a plain ``INSERT`` that the caller runs inside a
savepoint and catches (no ``MERGE``: it is not race-safe without ``HOLDLOCK``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Delete, Insert, Select, Table, Update, and_, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from floworch.model.statuses import RunStatus
from floworch.storage.sql.schema import (
    buffered_signals,
    claims,
    cron_fires,
    events,
    flows,
    idempotency_keys,
    runs,
    schedule_states,
    signal_waiters,
    step_attempts,
    steps,
)

ON_CONFLICT_DIALECTS = frozenset({"postgresql", "sqlite"})


def primary_key_names(table: Table) -> list[str]:
    """The primary-key column names of ``table``."""
    return [column.name for column in table.primary_key.columns]


def insert_rows(table: Table) -> Insert:
    """A plain insert into ``table`` (values come as execute parameters, one dict per row)."""
    return insert(table)


def insert_ignoring_duplicates(table: Table, dialect: str, *, returning_keys: bool) -> Insert:
    """Insert-once: rows whose primary key exists are skipped on PostgreSQL and SQLite.

    On SQL Server the statement is a plain insert; the caller catches the duplicate-key error
    inside a savepoint.
    """
    stmt: Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(
            index_elements=primary_key_names(table)
        )
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=primary_key_names(table))
    else:
        stmt = insert(table)
    if returning_keys and dialect in ON_CONFLICT_DIALECTS:
        stmt = stmt.returning(*table.primary_key.columns)
    return stmt


def upsert_row(table: Table, dialect: str, update_columns: Sequence[str]) -> Insert:
    """Insert-or-update by primary key for PostgreSQL and SQLite (one statement)."""
    keys = primary_key_names(table)
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={name: pg.excluded[name] for name in update_columns}
        )
    if dialect == "sqlite":
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(
            index_elements=keys, set_={name: lite.excluded[name] for name in update_columns}
        )
    raise ValueError(f"no single-statement upsert on {dialect}; use update_by_key + insert")


def update_by_key(table: Table, key: Mapping[str, Any], values: Mapping[str, Any]) -> Update:
    """``UPDATE table SET values WHERE <primary key> = key`` (first half of an mssql upsert)."""
    return (
        update(table)
        .where(*(table.c[name] == value for name, value in key.items()))
        .values(**values)
    )


def select_by_key(table: Table, key: Mapping[str, Any]) -> Select[Any]:
    """Reads one row by its primary key."""
    return select(table).where(*(table.c[name] == value for name, value in key.items()))


# -- runs -------------------------------------------------------------------------------------


def lock_run(run_id: str) -> Update:
    """Takes the run's row lock: a write every database serialises (and 0 rows = no such run)."""
    return update(runs).where(runs.c.run_id == run_id).values(lock_version=runs.c.lock_version + 1)


def select_run(run_id: str) -> Select[Any]:
    """Reads one run."""
    return select(runs).where(runs.c.run_id == run_id)


def update_run(
    run_id: str,
    *,
    status: RunStatus | None,
    remaining_delta: int,
    completed_at: datetime | None,
    cancel_reason: str | None,
    clear_completed: bool,
    seq_floor: int | None = None,
) -> Update:
    """Changes a run in place (``remaining`` is added in SQL) and returns the new row."""
    values: dict[str, Any] = {"remaining": runs.c.remaining + remaining_delta}
    if status is not None:
        values["status"] = str(status)
    if completed_at is not None:
        values["completed_at"] = completed_at
    if clear_completed:
        values["completed_at"] = None
    if cancel_reason is not None:
        values["cancel_reason"] = cancel_reason
    if seq_floor is not None:
        values["seq_floor"] = seq_floor
    return update(runs).where(runs.c.run_id == run_id).values(**values).returning(*runs.c)


# -- idempotency ------------------------------------------------------------------------------


def select_idempotency_owner(flow_id: str, trigger_key: str, key: str) -> Select[Any]:
    """The run that registered an idempotency key."""
    return select(idempotency_keys.c.run_id).where(
        idempotency_keys.c.flow_id == flow_id,
        idempotency_keys.c.trigger_key == trigger_key,
        idempotency_keys.c.idempotency_key == key,
    )


# -- steps ------------------------------------------------------------------------------------


def select_steps(run_id: str, keys: Collection[str]) -> Select[Any]:
    """Reads the given steps of a run."""
    return (
        select(steps)
        .where(steps.c.run_id == run_id, steps.c.step_key.in_(list(keys)))
        .order_by(steps.c.id)
    )


def select_steps_with_prefix(run_id: str, prefix: str) -> Select[Any]:
    """Reads the steps whose key starts with ``prefix`` (``LIKE`` with escaped wildcards)."""
    stmt = select(steps).where(steps.c.run_id == run_id)
    if prefix:
        stmt = stmt.where(steps.c.step_key.startswith(prefix, autoescape=True))
    return stmt.order_by(steps.c.id)


def select_all_steps(run_id: str) -> Select[Any]:
    """Every step of a run, in creation order."""
    return select(steps).where(steps.c.run_id == run_id).order_by(steps.c.id)


def update_step(
    run_id: str,
    step_key: str,
    values: Mapping[str, Any],
    *,
    expect_seq: int | None,
    expect_statuses: Collection[str] | None,
) -> Update:
    """Conditionally changes one step and returns the new row (no row = stale writer)."""
    stmt = update(steps).where(steps.c.run_id == run_id, steps.c.step_key == step_key)
    if expect_seq is not None:
        stmt = stmt.where(steps.c.seq == expect_seq)
    if expect_statuses is not None:
        stmt = stmt.where(steps.c.status.in_([str(s) for s in expect_statuses]))
    return stmt.values(**values).returning(*steps.c)


def delete_step_rows(table: Table, run_id: str, keys: Collection[str]) -> Delete:
    """Deletes rows of ``table`` (steps, claims or waiters) for some step keys of one run."""
    return delete(table).where(table.c.run_id == run_id, table.c.step_key.in_(list(keys)))


def select_attempts(run_id: str, step_key: str | None) -> Select[Any]:
    """Attempt history, oldest first."""
    stmt = select(step_attempts).where(step_attempts.c.run_id == run_id)
    if step_key is not None:
        stmt = stmt.where(step_attempts.c.step_key == step_key)
    return stmt.order_by(step_attempts.c.id)


# -- signals ----------------------------------------------------------------------------------


def select_waiters_for_signal(run_id: str, signal_name: str) -> Select[Any]:
    """The waiters of one signal name, oldest first (the first undelivered one gets it)."""
    return (
        select(signal_waiters.c.step_key, signal_waiters.c.delivered_at)
        .where(signal_waiters.c.run_id == run_id, signal_waiters.c.signal_name == signal_name)
        .order_by(signal_waiters.c.created_at, signal_waiters.c.step_key)
    )


def deliver_to_waiter(run_id: str, step_key: str, payload: Any, now: datetime) -> Update:
    """Delivers to one waiter only if nothing was delivered yet (the caller checks row count)."""
    return (
        update(signal_waiters)
        .where(
            signal_waiters.c.run_id == run_id,
            signal_waiters.c.step_key == step_key,
            signal_waiters.c.delivered_at.is_(None),
        )
        .values(delivered_at=now, payload=payload)
    )


def select_buffered(run_id: str, signal_name: str) -> Select[Any]:
    """A buffered signal of that name, consumed or not."""
    return select(buffered_signals).where(
        buffered_signals.c.run_id == run_id, buffered_signals.c.signal_name == signal_name
    )


def consume_buffered(run_id: str, signal_name: str, now: datetime) -> Update:
    """Marks a buffered signal consumed if it was not yet (the caller checks row count)."""
    return (
        update(buffered_signals)
        .where(
            buffered_signals.c.run_id == run_id,
            buffered_signals.c.signal_name == signal_name,
            buffered_signals.c.consumed_at.is_(None),
        )
        .values(consumed_at=now)
    )


def select_waiter_created_at(run_id: str, step_key: str) -> Select[Any]:
    """The creation time of a step's waiter (kept when the step registers again)."""
    return select(signal_waiters.c.created_at).where(
        signal_waiters.c.run_id == run_id, signal_waiters.c.step_key == step_key
    )


def select_waiters(run_id: str) -> Select[Any]:
    """Every waiter of a run."""
    return (
        select(signal_waiters)
        .where(signal_waiters.c.run_id == run_id)
        .order_by(signal_waiters.c.created_at, signal_waiters.c.step_key)
    )


# -- events, flows, schedules -----------------------------------------------------------------


def select_events(run_id: str, after_id: int, limit: int) -> Select[Any]:
    """A run's event log from after ``after_id``."""
    return (
        select(events)
        .where(events.c.run_id == run_id, events.c.event_id > after_id)
        .order_by(events.c.event_id)
        .limit(limit)
    )


def select_flows() -> Select[Any]:
    """Every flow, by id."""
    return select(flows).order_by(flows.c.flow_id)


def set_flow_enabled(flow_id: str, enabled: bool, now: datetime) -> Update:
    """Enables or disables one flow."""
    return update(flows).where(flows.c.flow_id == flow_id).values(enabled=enabled, updated_at=now)


def select_schedule_for_update(flow_id: str, trigger_key: str) -> Select[Any]:
    """One schedule state, row-locked until commit: ``FOR UPDATE`` on PostgreSQL, an
    ``UPDLOCK`` table hint on SQL Server (SQLAlchemy renders no FOR UPDATE there); SQLite's
    write transaction already excludes other writers."""
    return (
        select(schedule_states)
        .where(schedule_states.c.flow_id == flow_id, schedule_states.c.trigger_key == trigger_key)
        .with_hint(schedule_states, "WITH (UPDLOCK, ROWLOCK)", "mssql")
        .with_for_update()
    )


def select_schedules() -> Select[Any]:
    """Every schedule state, by flow and trigger."""
    return select(schedule_states).order_by(
        schedule_states.c.flow_id, schedule_states.c.trigger_key
    )


def cron_fire_key(flow_id: str, trigger_key: str, fire_time: datetime) -> dict[str, Any]:
    """The primary key of a cron fire row."""
    return {"flow_id": flow_id, "trigger_key": trigger_key, "fire_time": fire_time}


def claim_key(run_id: str, step_key: str, seq: int) -> dict[str, Any]:
    """The primary key of a claim (and of a ledger row)."""
    return {"run_id": run_id, "step_key": step_key, "seq": seq}


def claim_conditions(run_id: str, step_key: str, seq: int) -> Any:
    """``WHERE`` for one claim row."""
    return and_(claims.c.run_id == run_id, claims.c.step_key == step_key, claims.c.seq == seq)


TABLES_WITH_INSERT_ONCE = (claims, cron_fires, idempotency_keys, buffered_signals)
"""Tables written with :func:`insert_ignoring_duplicates` (besides the dispatch ledger)."""
