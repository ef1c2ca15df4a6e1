"""Statements of the transaction operations: every statement a :class:`~.tx.SqlTx` issues.

Each builder returns a :class:`~floworch.storage.sql.compiled.Stmt`: a key naming the statement's
shape and a function building the SQLAlchemy Core construct, compiled once per database. Values
are bind parameters (named below), never literals baked into the shape; a builder's arguments
only choose the shape (which columns, how many keys). Builders whose SQL depends on the database
take ``dialect`` (the SQLAlchemy dialect name): PostgreSQL and SQLite get ``INSERT ... ON
CONFLICT``; SQL Server gets a plain ``INSERT`` that the caller runs inside a savepoint and catches
(no ``MERGE``: it is not race-safe without ``HOLDLOCK``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from floworch.storage.sql.compiled import Stmt, bp, bp_int, key_in
from floworch.storage.sql.schema import (
    buffered_signals,
    events,
    flows,
    idempotency_keys,
    loop_items,
    runs,
    schedule_states,
    signal_waiters,
    step_attempts,
    steps,
)

ON_CONFLICT_DIALECTS = frozenset({"postgresql", "sqlite"})
LIKE_ESCAPE = "/"
KEYS_PER_STATEMENT = 500
"""Keys per ``IN`` list of one statement."""


def primary_key_names(table: Table) -> list[str]:
    """The primary-key column names of ``table``."""
    return [column.name for column in table.primary_key.columns]


def like_prefix(prefix: str) -> str:
    """A ``LIKE`` pattern matching strings that start with ``prefix`` (wildcards escaped)."""
    escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return escaped + "%"


def _values(table: Table, columns: Sequence[str], suffix: str = "") -> dict[str, object]:
    return {name: bp(name + suffix, table.c[name]) for name in columns}


def insert_rows(table: Table, columns: Sequence[str]) -> Stmt:
    """A plain insert of ``columns`` (values named as the columns; one parameter set per row)."""
    cols = tuple(columns)
    return Stmt(("insert", table.name, cols), lambda: insert(table).values(_values(table, cols)))


def insert_ignoring_duplicates(
    table: Table, dialect: str, columns: Sequence[str], *, rows: int = 1, returning_keys: bool
) -> Stmt:
    """Insert-once of ``rows`` rows: rows whose primary key exists are skipped on PostgreSQL and
    SQLite (values named ``<column>_<row>``). On SQL Server it is a plain one-row insert (values
    named as the columns); the caller catches the duplicate-key error inside a savepoint."""
    cols = tuple(columns)

    def build() -> Executable:
        keys = primary_key_names(table)
        if dialect not in ON_CONFLICT_DIALECTS:
            return insert(table).values(_values(table, cols))
        values = [_values(table, cols, f"_{i}") for i in range(rows)]
        stmt: postgresql.Insert | sqlite.Insert
        if dialect == "postgresql":
            stmt = postgresql.insert(table).values(values)
        else:
            stmt = sqlite.insert(table).values(values)
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        if returning_keys:
            return stmt.returning(*table.primary_key.columns)
        return stmt

    return Stmt(("insert_once", table.name, dialect, cols, rows, returning_keys), build)


def upsert_row(table: Table, dialect: str, columns: Sequence[str], update: Sequence[str]) -> Stmt:
    """Insert-or-update by primary key for PostgreSQL and SQLite (one statement)."""
    if dialect not in ON_CONFLICT_DIALECTS:
        raise ValueError(f"no single-statement upsert on {dialect}; use update_by_key + insert")
    cols, changed = tuple(columns), tuple(update)

    def build() -> Executable:
        keys = primary_key_names(table)
        if dialect == "postgresql":
            pg = postgresql.insert(table).values(_values(table, cols))
            return pg.on_conflict_do_update(
                index_elements=keys, set_={name: pg.excluded[name] for name in changed}
            )
        lite = sqlite.insert(table).values(_values(table, cols))
        return lite.on_conflict_do_update(
            index_elements=keys, set_={name: lite.excluded[name] for name in changed}
        )

    return Stmt(("upsert", table.name, dialect, cols, changed), build)


def _by_key(table: Table) -> list[ColumnElement[bool]]:
    return [table.c[name] == bp(f"k_{name}", table.c[name]) for name in primary_key_names(table)]


def update_by_key(table: Table, changed: Sequence[str]) -> Stmt:
    """``UPDATE table SET <changed> WHERE <primary key>`` (keys named ``k_<column>``)."""
    cols = tuple(changed)

    def build() -> Executable:
        return update(table).where(*_by_key(table)).values(_values(table, cols))

    return Stmt(("update_by_key", table.name, cols), build)


def select_by_key(table: Table) -> Stmt:
    """Reads one row by its primary key (keys named ``k_<column>``)."""

    def build() -> Executable:
        return select(table).where(*_by_key(table))

    return Stmt(("select_by_key", table.name), build)


# -- runs -------------------------------------------------------------------------------------


def lock_run() -> Stmt:
    """Takes the run's row lock, a write every database serialises, and returns the locked row
    (0 rows = no such run). Values: ``run_id``."""
    return _LOCK_RUN


_LOCK_RUN = Stmt(
    "lock_run",
    lambda: (
        update(runs)
        .where(runs.c.run_id == bp("run_id", runs.c.run_id))
        .values(lock_version=runs.c.lock_version + 1)
        .returning(*runs.c)
    ),
)


def select_run() -> Stmt:
    """Reads one run. Values: ``run_id``."""
    return _SELECT_RUN


_SELECT_RUN = Stmt(
    "select_run", lambda: select(runs).where(runs.c.run_id == bp("run_id", runs.c.run_id))
)


def update_run(changed: Sequence[str], *, clear_completed: bool) -> Stmt:
    """Changes a run in place and returns the new row. ``remaining`` is added in SQL (value
    ``delta``); ``changed`` names the other columns set (values named as the columns)."""
    cols = tuple(changed)

    def build() -> Executable:
        values: dict[str, object] = {"remaining": runs.c.remaining + bp_int("delta")}
        values.update(_values(runs, cols))
        if clear_completed:
            values["completed_at"] = None
        return (
            update(runs)
            .where(runs.c.run_id == bp("run_id", runs.c.run_id))
            .values(values)
            .returning(*runs.c)
        )

    return Stmt(("update_run", cols, clear_completed), build)


# -- idempotency ------------------------------------------------------------------------------


def select_idempotency_owner() -> Stmt:
    """The run that registered an idempotency key. Values: ``flow_id``, ``trigger_key``, ``key``."""
    return _SELECT_IDEMPOTENCY_OWNER


_SELECT_IDEMPOTENCY_OWNER = Stmt(
    "select_idempotency_owner",
    lambda: select(idempotency_keys.c.run_id).where(
        idempotency_keys.c.flow_id == bp("flow_id", idempotency_keys.c.flow_id),
        idempotency_keys.c.trigger_key == bp("trigger_key", idempotency_keys.c.trigger_key),
        idempotency_keys.c.idempotency_key == bp("key", idempotency_keys.c.idempotency_key),
    ),
)


# -- steps ------------------------------------------------------------------------------------


def select_steps(count: int) -> Stmt:
    """Reads ``count`` steps of a run. Values: ``run_id``, ``k0`` .. ``k<count-1>``."""
    return Stmt(
        ("select_steps", count),
        lambda: (
            select(steps)
            .where(
                steps.c.run_id == bp("run_id", steps.c.run_id), key_in(steps.c.step_key, "k", count)
            )
            .order_by(steps.c.id)
        ),
    )


def step_reads(run_id: str, keys: Collection[str]) -> list[tuple[Stmt, dict[str, Any]]]:
    """The :func:`select_steps` statements, with their values, that read ``keys`` of a run."""
    wanted = list(dict.fromkeys(keys))
    batch: list[tuple[Stmt, dict[str, Any]]] = []
    for start in range(0, len(wanted), KEYS_PER_STATEMENT):
        chunk = wanted[start : start + KEYS_PER_STATEMENT]
        values: dict[str, Any] = {"run_id": run_id}
        values.update((f"k{i}", key) for i, key in enumerate(chunk))
        batch.append((select_steps(len(chunk)), values))
    return batch


def select_steps_with_prefix(*, with_prefix: bool) -> Stmt:
    """Reads the steps whose key matches ``pattern`` (see :func:`like_prefix`), or all steps.
    Values: ``run_id`` (and ``pattern``)."""

    def build() -> Executable:
        stmt = select(steps).where(steps.c.run_id == bp("run_id", steps.c.run_id))
        if with_prefix:
            pattern = bp("pattern", steps.c.step_key)
            stmt = stmt.where(steps.c.step_key.like(pattern, escape=LIKE_ESCAPE))
        return stmt.order_by(steps.c.id)

    return Stmt(("select_steps_with_prefix", with_prefix), build)


def update_step(changed: Sequence[str], *, expect_seq: bool, expect_statuses: int | None) -> Stmt:
    """Conditionally changes one step and returns the new row (no row = stale writer). Values:
    ``run_id``, ``step_key``, the changed columns (named ``v_<column>``), ``expect_seq``, and
    ``s0`` .. for the expected statuses."""
    cols = tuple(changed)

    def build() -> Executable:
        stmt = update(steps).where(
            steps.c.run_id == bp("run_id", steps.c.run_id),
            steps.c.step_key == bp("step_key", steps.c.step_key),
        )
        if expect_seq:
            stmt = stmt.where(steps.c.seq == bp("expect_seq", steps.c.seq))
        if expect_statuses is not None:
            stmt = stmt.where(key_in(steps.c.status, "s", expect_statuses))
        values = {name: bp(f"v_{name}", steps.c[name]) for name in cols}
        return stmt.values(values).returning(*steps.c)

    return Stmt(("update_step", cols, expect_seq, expect_statuses), build)


def delete_step_rows(table: Table, count: int) -> Stmt:
    """Deletes rows of ``table`` (steps, claims or waiters) for ``count`` step keys of one run.
    Values: ``run_id``, ``k0`` ..."""
    return Stmt(
        ("delete_step_rows", table.name, count),
        lambda: delete(table).where(
            table.c.run_id == bp("run_id", table.c.run_id), key_in(table.c.step_key, "k", count)
        ),
    )


def select_attempts(*, one_step: bool) -> Stmt:
    """Attempt history, oldest first. Values: ``run_id`` (and ``step_key``)."""

    def build() -> Executable:
        a = step_attempts.c
        stmt = select(step_attempts).where(a.run_id == bp("run_id", a.run_id))
        if one_step:
            stmt = stmt.where(a.step_key == bp("step_key", a.step_key))
        return stmt.order_by(step_attempts.c.id)

    return Stmt(("select_attempts", one_step), build)


# -- signals ----------------------------------------------------------------------------------

_W = signal_waiters.c
_B = buffered_signals.c


def select_waiters_for_signal() -> Stmt:
    """The waiters of one signal name, oldest first. Values: ``run_id``, ``signal_name``."""
    return _SELECT_WAITERS_FOR_SIGNAL


_SELECT_WAITERS_FOR_SIGNAL = Stmt(
    "select_waiters_for_signal",
    lambda: (
        select(_W.step_key, _W.delivered_at)
        .where(
            _W.run_id == bp("run_id", _W.run_id),
            _W.signal_name == bp("signal_name", _W.signal_name),
        )
        .order_by(_W.created_at, _W.step_key)
    ),
)


def deliver_to_waiter() -> Stmt:
    """Delivers to one waiter only if nothing was delivered yet (the caller checks row count).
    Values: ``run_id``, ``step_key``, ``payload``, ``now``."""
    return _DELIVER_TO_WAITER


_DELIVER_TO_WAITER = Stmt(
    "deliver_to_waiter",
    lambda: (
        update(signal_waiters)
        .where(
            _W.run_id == bp("run_id", _W.run_id),
            _W.step_key == bp("step_key", _W.step_key),
            _W.delivered_at.is_(None),
        )
        .values(delivered_at=bp("now", _W.delivered_at), payload=bp("payload", _W.payload))
    ),
)


def select_buffered() -> Stmt:
    """A buffered signal of that name, consumed or not. Values: ``run_id``, ``signal_name``."""
    return _SELECT_BUFFERED


_SELECT_BUFFERED = Stmt(
    "select_buffered",
    lambda: select(buffered_signals).where(
        _B.run_id == bp("run_id", _B.run_id), _B.signal_name == bp("signal_name", _B.signal_name)
    ),
)


def consume_buffered() -> Stmt:
    """Marks a buffered signal consumed if it was not yet (the caller checks row count).
    Values: ``run_id``, ``signal_name``, ``now``."""
    return _CONSUME_BUFFERED


_CONSUME_BUFFERED = Stmt(
    "consume_buffered",
    lambda: (
        update(buffered_signals)
        .where(
            _B.run_id == bp("run_id", _B.run_id),
            _B.signal_name == bp("signal_name", _B.signal_name),
            _B.consumed_at.is_(None),
        )
        .values(consumed_at=bp("now", _B.consumed_at))
    ),
)


def select_waiter_created_at() -> Stmt:
    """The creation time of a step's waiter. Values: ``run_id``, ``step_key``."""
    return _SELECT_WAITER_CREATED_AT


_SELECT_WAITER_CREATED_AT = Stmt(
    "select_waiter_created_at",
    lambda: select(_W.created_at).where(
        _W.run_id == bp("run_id", _W.run_id), _W.step_key == bp("step_key", _W.step_key)
    ),
)


def select_waiters() -> Stmt:
    """Every waiter of a run. Values: ``run_id``."""
    return _SELECT_WAITERS


_SELECT_WAITERS = Stmt(
    "select_waiters",
    lambda: (
        select(signal_waiters)
        .where(_W.run_id == bp("run_id", _W.run_id))
        .order_by(_W.created_at, _W.step_key)
    ),
)


# -- events, flows, schedules -----------------------------------------------------------------


def select_events() -> Stmt:
    """A run's event log from after ``after_id``. Values: ``run_id``, ``after_id``, ``limit``."""
    return _SELECT_EVENTS


_SELECT_EVENTS = Stmt(
    "select_events",
    lambda: (
        select(events)
        .where(
            events.c.run_id == bp("run_id", events.c.run_id),
            events.c.event_id > bp("after_id", events.c.event_id),
        )
        .order_by(events.c.event_id)
        .limit(bp_int("limit"))
    ),
)


def select_flows() -> Stmt:
    """Every flow, by id."""
    return _SELECT_FLOWS


_SELECT_FLOWS = Stmt("select_flows", lambda: select(flows).order_by(flows.c.flow_id))


def set_flow_enabled() -> Stmt:
    """Enables or disables one flow. Values: ``flow_id``, ``enabled``, ``now``."""
    return _SET_FLOW_ENABLED


_SET_FLOW_ENABLED = Stmt(
    "set_flow_enabled",
    lambda: (
        update(flows)
        .where(flows.c.flow_id == bp("flow_id", flows.c.flow_id))
        .values(enabled=bp("enabled", flows.c.enabled), updated_at=bp("now", flows.c.updated_at))
    ),
)


def select_schedule_for_update() -> Stmt:
    """One schedule state, row-locked until commit: ``FOR UPDATE`` on PostgreSQL, an
    ``UPDLOCK`` table hint on SQL Server (SQLAlchemy renders no FOR UPDATE there); SQLite's
    write transaction already excludes other writers. Values: ``flow_id``, ``trigger_key``."""
    return _SELECT_SCHEDULE_FOR_UPDATE


_S = schedule_states.c
_SELECT_SCHEDULE_FOR_UPDATE = Stmt(
    "select_schedule_for_update",
    lambda: (
        select(schedule_states)
        .where(
            _S.flow_id == bp("flow_id", _S.flow_id),
            _S.trigger_key == bp("trigger_key", _S.trigger_key),
        )
        .with_hint(schedule_states, "WITH (UPDLOCK, ROWLOCK)", "mssql")
        .with_for_update()
    ),
)


def select_schedules() -> Stmt:
    """Every schedule state, by flow and trigger."""
    return _SELECT_SCHEDULES


_SELECT_SCHEDULES = Stmt(
    "select_schedules", lambda: select(schedule_states).order_by(_S.flow_id, _S.trigger_key)
)


# -- loop items -------------------------------------------------------------------------------


def select_loop_item() -> Stmt:
    """One item of a ForEach. Values: ``run_id``, ``step_key``, ``item_index``."""
    return _SELECT_LOOP_ITEM


_SELECT_LOOP_ITEM = Stmt(
    "select_loop_item",
    lambda: select(loop_items.c.item).where(
        loop_items.c.run_id == bp("run_id", loop_items.c.run_id),
        loop_items.c.step_key == bp("step_key", loop_items.c.step_key),
        loop_items.c.item_index == bp("item_index", loop_items.c.item_index),
    ),
)
