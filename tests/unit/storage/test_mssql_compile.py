"""Every DDL statement and every statement the SQL adapter issues compiles for SQL Server,
PostgreSQL and SQLite, so dialect mistakes show up without a server."""

from __future__ import annotations

import inspect
from typing import Any, TypedDict

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql.expression import ClauseElement, Executable

from floworch.storage.sql import scan_statements as sc
from floworch.storage.sql import statements as st
from floworch.storage.sql.compiled import Stmt, compile_statement
from floworch.storage.sql.schema import (
    buffered_signals,
    claims,
    cron_fires,
    dispatches,
    flows,
    idempotency_keys,
    metadata,
    runs,
    schedule_states,
    signal_waiters,
)


def _sql_server_2019() -> Dialect:
    # What the dialect sets up after connecting to SQL Server 2019 / Azure SQL.
    # SQLAlchemy's dialect classes are unannotated: an untyped constructor, and a class attribute
    # `server_version_info = ()` that mypy reads as tuple[()].
    dialect = mssql.dialect(deprecate_large_types=True)  # type: ignore[no-untyped-call]
    dialect.server_version_info = (15, 0)  # type: ignore[assignment]
    dialect._supports_offset_fetch = True
    return dialect


DIALECTS: dict[str, Dialect] = {
    "mssql": _sql_server_2019(),
    "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]  # unannotated
    "sqlite": sqlite.dialect(),
}
STEP_FIELDS = ("status", "output", "completed_at", "lease_owner")


class QueryShape(TypedDict):
    """The keyword arguments of ``select_runs`` and ``count_runs``."""

    flow: bool
    statuses: int
    after: bool
    before: bool


QUERY_SHAPES: tuple[QueryShape, ...] = (
    {"flow": True, "statuses": 2, "after": True, "before": True},
    {"flow": False, "statuses": 0, "after": False, "before": False},
)


def _samples(dialect: str) -> dict[str, list[Stmt]]:
    """One or more statements per builder; the keys name the builders they cover."""
    tables = metadata.sorted_tables
    samples: dict[str, list[Stmt]] = {
        "insert_rows": [st.insert_rows(table, [c.name for c in table.c]) for table in tables],
        "update_by_key": [st.update_by_key(flows, ["version"])],
        "select_by_key": [st.select_by_key(schedule_states)],
        "lock_run": [st.lock_run()],
        "select_run": [st.select_run()],
        "update_run": [
            st.update_run(("status", "completed_at", "cancel_reason"), clear_completed=False),
            st.update_run((), clear_completed=True),
        ],
        "select_idempotency_owner": [st.select_idempotency_owner()],
        "select_loop_item": [st.select_loop_item()],
        "select_steps": [st.select_steps(2)],
        "select_steps_with_prefix": [
            st.select_steps_with_prefix(with_prefix=True),
            st.select_steps_with_prefix(with_prefix=False),
        ],
        "update_step": [
            st.update_step(STEP_FIELDS, expect_seq=True, expect_statuses=None),
            st.update_step(STEP_FIELDS, expect_seq=False, expect_statuses=2),
        ],
        "delete_step_rows": [st.delete_step_rows(signal_waiters, 3)],
        "select_attempts": [
            st.select_attempts(one_step=False),
            st.select_attempts(one_step=True),
        ],
        "select_waiters_for_signal": [st.select_waiters_for_signal()],
        "deliver_to_waiter": [st.deliver_to_waiter()],
        "select_buffered": [st.select_buffered()],
        "consume_buffered": [st.consume_buffered()],
        "select_waiter_created_at": [st.select_waiter_created_at()],
        "select_waiters": [st.select_waiters()],
        "select_events": [st.select_events()],
        "select_flows": [st.select_flows()],
        "set_flow_enabled": [st.set_flow_enabled()],
        "select_schedules": [st.select_schedules()],
        "select_schedule_for_update": [st.select_schedule_for_update()],
        "insert_ignoring_duplicates": [
            st.insert_ignoring_duplicates(
                table, dialect, [c.name for c in table.c], rows=rows, returning_keys=returning
            )
            for table in (claims, cron_fires, idempotency_keys, buffered_signals, dispatches, flows)
            for returning in (True, False)
            for rows in (1, 3)
        ],
        "start_step": [sc.start_step(with_run=dialect != "mssql")],
        "take_over_step": [sc.take_over_step(with_run=dialect != "mssql")],
        "classify_claim": [sc.classify_claim()],
        "renew_step_lease": [sc.renew_step_lease()],
        "select_run_status": [sc.select_run_status()],
        "mark_dispatched_each": [sc.mark_dispatched_each()],
        "select_due_dispatches": [sc.select_due_dispatches()],
        "delete_settled_dispatches": [sc.delete_settled_dispatches()],
        "select_expired_leases": [sc.select_expired_leases()],
        "select_runs_past_timeout": [sc.select_runs_past_timeout()],
        "select_unfinished_runs": [sc.select_unfinished_runs()],
        "select_runs": [sc.select_runs(**shape) for shape in QUERY_SHAPES],
        "count_runs": [sc.count_runs(**shape) for shape in QUERY_SHAPES],
        "select_prunable_runs": [sc.select_prunable_runs()],
        "delete_by_runs": [
            sc.delete_by_runs(table, 2) for table in metadata.sorted_tables if "run_id" in table.c
        ],
    }
    if dialect in st.ON_CONFLICT_DIALECTS:
        # Row-value IN and ON CONFLICT exist only there; SQL Server uses the other builders.
        samples["mark_dispatched_in"] = [sc.mark_dispatched_in(2)]
        samples["upsert_row"] = [
            st.upsert_row(
                schedule_states, dialect, ["flow_id", "trigger_key", "paused"], ["paused"]
            ),
            st.upsert_row(signal_waiters, dialect, ["run_id", "step_key", "payload"], ["payload"]),
        ]
    return samples


def _builders(module: Any) -> set[str]:
    return {
        name
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if fn.__module__ == module.__name__ and not name.startswith("_")
    }


NOT_STATEMENTS = {"primary_key_names", "like_prefix", "step_reads"}  # step_reads: select_steps
MSSQL_ABSENT = {"mark_dispatched_in", "upsert_row"}


def _compile(stmt: Stmt | ClauseElement, dialect: Dialect) -> str:
    """SQL Server runs statements through SQLAlchemy (which expands TOP at execution); the
    others through :func:`compile_statement`, which must accept every one of them."""
    if not isinstance(stmt, Stmt):
        return str(stmt.compile(dialect=dialect))
    built = stmt.build()
    if dialect.name != "mssql":
        return compile_statement(built, dialect).sql
    return str(_clause(built).compile(dialect=dialect))


def _clause(statement: Executable) -> ClauseElement:
    """``Executable`` is a mixin without ``compile``; every Core statement is a ClauseElement."""
    assert isinstance(statement, ClauseElement)
    return statement


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_every_builder_is_compiled(name: str) -> None:
    covered = set(_samples(name))
    builders = (_builders(st) | _builders(sc)) - NOT_STATEMENTS
    if name == "mssql":
        builders -= MSSQL_ABSENT
    assert builders - covered == set(), "add a sample for each new statement builder"


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_every_statement_compiles(name: str) -> None:
    for builder, statements in _samples(name).items():
        for stmt in statements:
            sql = _compile(stmt, DIALECTS[name])
            assert sql.strip(), builder


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_every_table_and_index_compiles(name: str) -> None:
    dialect = DIALECTS[name]
    for table in metadata.sorted_tables:
        ddl = _compile(CreateTable(table), dialect)
        assert table.name in ddl
        for index in table.indexes:
            assert index.name is not None and index.name in _compile(CreateIndex(index), dialect)


def test_sql_server_ddl_uses_nvarchar_max_datetimeoffset_and_binary_keys() -> None:
    ddl = {t.name: _compile(CreateTable(t), DIALECTS["mssql"]) for t in metadata.sorted_tables}
    assert "trigger_body NVARCHAR(max)" in ddl["runs"]
    assert "created_at DATETIMEOFFSET" in ddl["runs"]
    assert "NTEXT" not in "".join(ddl.values())
    assert "step_key NVARCHAR(300) COLLATE Latin1_General_100_BIN2" in ddl["steps"]
    assert "event_id BIGINT NOT NULL IDENTITY" in ddl["events"]


def test_sql_server_statements_avoid_what_t_sql_lacks() -> None:
    dialect = DIALECTS["mssql"]
    for builder, statements in _samples("mssql").items():
        for stmt in statements:
            sql = _compile(stmt, dialect).upper()
            assert "MERGE " not in sql, builder
            assert "ON CONFLICT" not in sql, builder
            assert " LIMIT " not in sql, builder
            assert "RETURNING" not in sql, builder
    assert "OUTPUT inserted." in _compile(sc.start_step(with_run=False), dialect)
    assert "FETCH FIRST" in _compile(sc.select_unfinished_runs(), dialect)
    paged = _compile(sc.select_runs(**QUERY_SHAPES[1]), dialect)
    assert "OFFSET" in paged and "FETCH" in paged


def test_insert_once_uses_on_conflict_where_available() -> None:
    columns = [c.name for c in dispatches.c]
    for name in ("postgresql", "sqlite"):
        stmt = st.insert_ignoring_duplicates(dispatches, name, columns, rows=2, returning_keys=True)
        sql = _compile(stmt, DIALECTS[name])
        assert "ON CONFLICT (run_id, step_key, seq) DO NOTHING" in sql
        assert "RETURNING" in sql
    with pytest.raises(ValueError):
        st.upsert_row(flows, "mssql", ["flow_id", "version"], ["version"])


def test_prefix_query_escapes_like_wildcards() -> None:
    sql = _compile(st.select_steps_with_prefix(with_prefix=True), DIALECTS["postgresql"])
    assert "ESCAPE" in sql
    assert st.like_prefix("a_%/b") == "a/_/%//b%"


def test_schedule_lock_renders_a_row_lock_per_dialect() -> None:
    built = _clause(st.select_schedule_for_update().build())
    postgres = postgresql.dialect()  # type: ignore[no-untyped-call]  # unannotated in SQLAlchemy
    assert "FOR UPDATE" in str(built.compile(dialect=postgres))
    sql_server = mssql.dialect()  # type: ignore[no-untyped-call]  # unannotated in SQLAlchemy
    assert "UPDLOCK" in str(built.compile(dialect=sql_server))


def test_values_are_bind_parameters_never_baked_into_a_shape() -> None:
    """A compiled statement is reused for every call, so no call's value may live in it."""
    compiled = compile_statement(
        st.update_step(STEP_FIELDS, expect_seq=True, expect_statuses=1).build(), DIALECTS["sqlite"]
    )
    named = {name for name, _, fixed, _ in compiled.binds if not fixed}
    assert named == {"run_id", "step_key", "expect_seq", "s0", *(f"v_{f}" for f in STEP_FIELDS)}
    with pytest.raises(ValueError, match="one_of"):
        compile_statement(select(runs).where(runs.c.status.in_(["a", "b"])), DIALECTS["sqlite"])
