"""The initial schema: flows, runs, steps, attempts, claims, the dispatch ledger, idempotency
keys, signal waiters, buffered signals, schedule state, the cron fire ledger and events.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import TypeEngine

from floworch.storage.sql.column_types import JSONText, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _key(length: int) -> TypeEngine[str]:
    return sa.Unicode(length=length).with_variant(
        sa.NVARCHAR(length=length, collation="Latin1_General_100_BIN2"), "mssql"
    )


def _long_text() -> TypeEngine[str]:
    return sa.UnicodeText().with_variant(sa.NVARCHAR(), "mssql")


def _serial() -> TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("run_id", _key(100), nullable=False),
        sa.Column("step_key", _key(300), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("owner", _key(100), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "step_key", "seq", name=op.f("pk_claims")),
    )
    op.create_table(
        "cron_fires",
        sa.Column("flow_id", _key(100), nullable=False),
        sa.Column("trigger_key", _key(100), nullable=False),
        sa.Column("fire_time", UTCDateTime(), nullable=False),
        sa.Column("run_id", _key(100), nullable=True),
        sa.PrimaryKeyConstraint("flow_id", "trigger_key", "fire_time", name=op.f("pk_cron_fires")),
    )
    op.create_table(
        "flows",
        sa.Column("flow_id", _key(100), nullable=False),
        sa.Column("version", _key(100), nullable=False),
        sa.Column("manifest", JSONText(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("flow_id", name=op.f("pk_flows")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("flow_id", _key(100), nullable=False),
        sa.Column("trigger_key", _key(100), nullable=False),
        sa.Column("idempotency_key", _key(200), nullable=False),
        sa.Column("run_id", _key(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "flow_id", "trigger_key", "idempotency_key", name=op.f("pk_idempotency_keys")
        ),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", _key(100), nullable=False),
        sa.Column("flow_id", _key(100), nullable=False),
        sa.Column("flow_version", _key(100), nullable=False),
        sa.Column("trigger_key", _key(100), nullable=False),
        sa.Column("status", sa.Unicode(length=20), nullable=False),
        sa.Column("trigger_body", JSONText(), nullable=True),
        sa.Column("trigger_headers", JSONText(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", _key(200), nullable=True),
        sa.Column("source_run_id", _key(100), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("timeout_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_reason", _long_text(), nullable=True),
        sa.Column("trace_context", JSONText(), nullable=True),
        sa.Column("lock_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_index(
        op.f("ix_runs_flow_id_status_created_at"),
        "runs",
        ["flow_id", "status", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_runs_status_completed_at"), "runs", ["status", "completed_at"], unique=False
    )
    op.create_index(
        op.f("ix_runs_status_created_at"), "runs", ["status", "created_at"], unique=False
    )
    op.create_index(
        op.f("ix_runs_status_timeout_at"), "runs", ["status", "timeout_at"], unique=False
    )
    op.create_table(
        "schedule_states",
        sa.Column("flow_id", _key(100), nullable=False),
        sa.Column("trigger_key", _key(100), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("cron_override", _key(100), nullable=True),
        sa.Column("last_fire_at", UTCDateTime(), nullable=True),
        sa.Column("next_fire_at", UTCDateTime(), nullable=True),
        sa.Column("pending_sequence_number", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("flow_id", "trigger_key", name=op.f("pk_schedule_states")),
    )
    op.create_table(
        "buffered_signals",
        sa.Column("run_id", _key(100), nullable=False),
        sa.Column("signal_name", _key(100), nullable=False),
        sa.Column("payload", JSONText(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("consumed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_buffered_signals_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "signal_name", name=op.f("pk_buffered_signals")),
    )
    op.create_table(
        "dispatches",
        sa.Column("run_id", _key(100), nullable=False),
        sa.Column("step_key", _key(300), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("flow_id", _key(100), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_dispatches_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "step_key", "seq", name=op.f("pk_dispatches")),
    )
    op.create_index(op.f("ix_dispatches_due_at"), "dispatches", ["due_at"], unique=False)
    op.create_index(
        op.f("ix_dispatches_sent_at_due_at"), "dispatches", ["sent_at", "due_at"], unique=False
    )
    op.create_table(
        "events",
        sa.Column("event_id", _serial(), autoincrement=True, nullable=False),
        sa.Column("run_id", _key(100), nullable=False),
        sa.Column("kind", _key(100), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("step_key", _key(300), nullable=True),
        sa.Column("message", _long_text(), nullable=False),
        sa.Column("data", JSONText(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name=op.f("fk_events_run_id_runs")),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_events")),
    )
    op.create_index(
        op.f("ix_events_run_id_event_id"), "events", ["run_id", "event_id"], unique=False
    )
    op.create_table(
        "signal_waiters",
        sa.Column("run_id", _key(100), nullable=False),
        sa.Column("step_key", _key(300), nullable=False),
        sa.Column("signal_name", _key(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("payload", JSONText(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_signal_waiters_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "step_key", name=op.f("pk_signal_waiters")),
    )
    op.create_index(
        op.f("ix_signal_waiters_run_id_signal_name"),
        "signal_waiters",
        ["run_id", "signal_name"],
        unique=False,
    )
    op.create_table(
        "step_attempts",
        sa.Column("id", _serial(), autoincrement=True, nullable=False),
        sa.Column("run_id", _key(100), nullable=False),
        sa.Column("step_key", _key(300), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.Unicode(length=20), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=False),
        sa.Column("output", JSONText(), nullable=True),
        sa.Column("error", JSONText(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_step_attempts_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_attempts")),
    )
    op.create_index(
        op.f("ix_step_attempts_run_id_step_key"),
        "step_attempts",
        ["run_id", "step_key"],
        unique=False,
    )
    op.create_table(
        "steps",
        sa.Column("id", _serial(), autoincrement=True, nullable=False),
        sa.Column("run_id", _key(100), nullable=False),
        sa.Column("step_key", _key(300), nullable=False),
        sa.Column("step_type", _key(100), nullable=False),
        sa.Column("status", sa.Unicode(length=20), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("inputs", JSONText(), nullable=True),
        sa.Column("output", JSONText(), nullable=True),
        sa.Column("error", JSONText(), nullable=True),
        sa.Column("when_trace", JSONText(), nullable=True),
        sa.Column("skip_reason", _long_text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("due_at", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", _key(100), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("state", JSONText(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name=op.f("fk_steps_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
    )
    op.create_index(op.f("ix_steps_run_id_step_key"), "steps", ["run_id", "step_key"], unique=True)
    op.create_index(
        op.f("ix_steps_status_lease_expires_at"),
        "steps",
        ["status", "lease_expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_steps_status_lease_expires_at"), table_name="steps")
    op.drop_index(op.f("ix_steps_run_id_step_key"), table_name="steps")
    op.drop_table("steps")
    op.drop_index(op.f("ix_step_attempts_run_id_step_key"), table_name="step_attempts")
    op.drop_table("step_attempts")
    op.drop_index(op.f("ix_signal_waiters_run_id_signal_name"), table_name="signal_waiters")
    op.drop_table("signal_waiters")
    op.drop_index(op.f("ix_events_run_id_event_id"), table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_dispatches_sent_at_due_at"), table_name="dispatches")
    op.drop_index(op.f("ix_dispatches_due_at"), table_name="dispatches")
    op.drop_table("dispatches")
    op.drop_table("buffered_signals")
    op.drop_table("schedule_states")
    op.drop_index(op.f("ix_runs_status_timeout_at"), table_name="runs")
    op.drop_index(op.f("ix_runs_status_created_at"), table_name="runs")
    op.drop_index(op.f("ix_runs_status_completed_at"), table_name="runs")
    op.drop_index(op.f("ix_runs_flow_id_status_created_at"), table_name="runs")
    op.drop_table("runs")
    op.drop_table("idempotency_keys")
    op.drop_table("flows")
    op.drop_table("cron_fires")
    op.drop_table("claims")
