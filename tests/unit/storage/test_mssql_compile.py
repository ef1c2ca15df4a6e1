"""Every DDL statement and every statement the SQL adapter issues compiles for SQL Server,
PostgreSQL and SQLite, so dialect mistakes show up without a server."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.records import RunQuery
from floworch.storage.sql import scan_statements as sc
from floworch.storage.sql import statements as st
from floworch.storage.sql.schema import dispatches, flows, metadata, schedule_states, signal_waiters

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _sql_server_2019() -> Dialect:
    # What the dialect sets up after connecting to SQL Server 2019 / Azure SQL.
    dialect = mssql.dialect(deprecate_large_types=True)
    dialect.server_version_info = (15, 0)
    dialect._supports_offset_fetch = True
    return dialect


DIALECTS: dict[str, Dialect] = {
    "mssql": _sql_server_2019(),
    "postgresql": postgresql.dialect(),
    "sqlite": sqlite.dialect(),
}
STEP_VALUES = {"status": "Running", "output": {"x": 1}, "completed_at": T0, "lease_owner": None}


def _samples(dialect: str) -> dict[str, list[Any]]:
    """One or more statements per builder; the keys name the builders they cover."""
    query = RunQuery(
        flow_id="f",
        statuses=frozenset({RunStatus.RUNNING, RunStatus.FAILED}),
        created_after=T0,
        created_before=T0,
        limit=10,
        offset=20,
    )
    samples: dict[str, list[Any]] = {
        "insert_rows": [st.insert_rows(table) for table in metadata.sorted_tables],
        "update_by_key": [st.update_by_key(flows, {"flow_id": "f"}, {"version": "2"})],
        "select_by_key": [st.select_by_key(schedule_states, {"flow_id": "f", "trigger_key": "t"})],
        "lock_run": [st.lock_run("r")],
        "select_run": [st.select_run("r")],
        "update_run": [
            st.update_run(
                "r",
                status=RunStatus.SUCCEEDED,
                remaining_delta=-1,
                completed_at=T0,
                cancel_reason="x",
                clear_completed=False,
            ),
            st.update_run(
                "r",
                status=None,
                remaining_delta=0,
                completed_at=None,
                cancel_reason=None,
                clear_completed=True,
            ),
        ],
        "select_idempotency_owner": [st.select_idempotency_owner("f", "t", "k")],
        "select_steps": [st.select_steps("r", ["a", "b"])],
        "select_steps_with_prefix": [
            st.select_steps_with_prefix("r", "each_1%."),
            st.select_steps_with_prefix("r", ""),
        ],
        "select_all_steps": [st.select_all_steps("r")],
        "update_step": [
            st.update_step("r", "a", STEP_VALUES, expect_seq=1, expect_statuses=None),
            st.update_step(
                "r", "a", STEP_VALUES, expect_seq=None, expect_statuses=[StepStatus.PENDING]
            ),
        ],
        "delete_step_rows": [st.delete_step_rows(signal_waiters, "r", ["a"])],
        "select_attempts": [st.select_attempts("r", None), st.select_attempts("r", "a")],
        "select_waiters_for_signal": [st.select_waiters_for_signal("r", "go")],
        "deliver_to_waiter": [st.deliver_to_waiter("r", "a", {"ok": True}, T0)],
        "select_buffered": [st.select_buffered("r", "go")],
        "consume_buffered": [st.consume_buffered("r", "go", T0)],
        "select_waiter_created_at": [st.select_waiter_created_at("r", "a")],
        "select_waiters": [st.select_waiters("r")],
        "select_events": [st.select_events("r", 5, 100)],
        "select_flows": [st.select_flows()],
        "set_flow_enabled": [st.set_flow_enabled("f", False, T0)],
        "select_schedules": [st.select_schedules()],
        "select_schedule_for_update": [st.select_schedule_for_update("f", "nightly")],
        "insert_ignoring_duplicates": [
            st.insert_ignoring_duplicates(table, dialect, returning_keys=returning)
            for table in (*st.TABLES_WITH_INSERT_ONCE, dispatches, flows)
            for returning in (True, False)
        ],
        "start_step": [
            sc.start_step("r", "a", 1, from_statuses=sc.PARKED, owner="w", lease_until=T0, now=T0)
        ],
        "take_over_claim": [sc.take_over_claim("r", "a", 1, owner="w", lease_until=T0, now=T0)],
        "overwrite_claim": [sc.overwrite_claim("r", "a", 1, owner="w", lease_until=T0, now=T0)],
        "classify_claim": [sc.classify_claim("r", "a")],
        "select_step_status": [sc.select_step_status("r", "a")],
        "renew_claim": [sc.renew_claim("r", "a", 1, "w", T0)],
        "renew_step_lease": [sc.renew_step_lease("r", "a", 1, "w", T0)],
        "select_run_status": [sc.select_run_status("r")],
        "select_existing_dispatch_keys": [sc.select_existing_dispatch_keys(["r"])],
        "mark_dispatched_each": [sc.mark_dispatched_each()],
        "select_due_dispatches": [
            sc.select_due_dispatches(unsent_grace_until=T0, sent_stuck_before=T0, limit=10)
        ],
        "delete_settled_dispatches": [sc.delete_settled_dispatches()],
        "select_expired_leases": [sc.select_expired_leases(T0, 10)],
        "select_runs_past_timeout": [sc.select_runs_past_timeout(T0, 10)],
        "select_unfinished_runs": [sc.select_unfinished_runs(10, "r")],
        "select_runs": [sc.select_runs(query), sc.select_runs(RunQuery())],
        "count_runs": [sc.count_runs(query)],
        "select_prunable_runs": [sc.select_prunable_runs(T0, 500)],
        "delete_by_runs": [
            sc.delete_by_runs(table, ["r1", "r2"])
            for table in metadata.sorted_tables
            if "run_id" in table.c
        ],
    }
    if dialect in st.ON_CONFLICT_DIALECTS:
        # Row-value IN and ON CONFLICT exist only there; SQL Server uses the other builders.
        samples["mark_dispatched_in"] = [sc.mark_dispatched_in([("r", "a", 1), ("r", "b", 2)], T0)]
        samples["upsert_row"] = [
            st.upsert_row(schedule_states, dialect, ["paused", "updated_at"]),
            st.upsert_row(signal_waiters, dialect, ["signal_name", "payload"]),
        ]
    return samples


def _builders(module: Any) -> set[str]:
    return {
        name
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if fn.__module__ == module.__name__ and not name.startswith("_")
    }


NOT_STATEMENTS = {"primary_key_names", "cron_fire_key", "claim_key", "claim_conditions"}
MSSQL_ABSENT = {"mark_dispatched_in", "upsert_row"}


def _compile(stmt: Any, dialect: Dialect) -> str:
    return str(stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}))


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
    claim = _compile(
        sc.start_step("r", "a", 1, from_statuses=sc.PARKED, owner="w", lease_until=T0, now=T0),
        dialect,
    )
    assert "OUTPUT inserted." in claim
    assert "TOP" in _compile(sc.select_unfinished_runs(10, ""), dialect)
    paged = _compile(sc.select_runs(RunQuery(limit=5, offset=10)), dialect)
    assert "OFFSET" in paged and "FETCH" in paged


def test_insert_once_uses_on_conflict_where_available() -> None:
    for name in ("postgresql", "sqlite"):
        sql = _compile(
            st.insert_ignoring_duplicates(dispatches, name, returning_keys=True), DIALECTS[name]
        )
        assert "ON CONFLICT (run_id, step_key, seq) DO NOTHING" in sql
        assert "RETURNING" in sql
    with pytest.raises(ValueError):
        st.upsert_row(flows, "mssql", ["version"])


def test_prefix_query_escapes_like_wildcards() -> None:
    sql = _compile(st.select_steps_with_prefix("r", "a_%"), DIALECTS["postgresql"])
    assert "ESCAPE" in sql


def test_schedule_lock_renders_a_row_lock_per_dialect() -> None:
    stmt = st.select_schedule_for_update("f", "nightly")
    assert "FOR UPDATE" in str(stmt.compile(dialect=postgresql.dialect()))
    assert "UPDLOCK" in str(stmt.compile(dialect=mssql.dialect()))
