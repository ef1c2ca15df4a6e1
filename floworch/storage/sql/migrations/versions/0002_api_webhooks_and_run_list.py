"""The control plane: webhook deliveries and rejections, and the indexes of the run list
(keyset paging newest first, per flow, text search, lineage) and of step-duration stats.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import TypeEngine

from floworch.storage.sql.column_types import UTCDateTime

revision = "0002"
down_revision = "0001"
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
        "webhook_deliveries",
        sa.Column("flow_id", _key(100), nullable=False),
        sa.Column("trigger_key", _key(100), nullable=False),
        sa.Column("delivery_id", _key(200), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("run_id", _key(100), nullable=True),
        sa.PrimaryKeyConstraint(
            "flow_id", "trigger_key", "delivery_id", name=op.f("pk_webhook_deliveries")
        ),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_received_at"), "webhook_deliveries", ["received_at"]
    )
    op.create_table(
        "webhook_rejections",
        sa.Column("rejection_id", _serial(), autoincrement=True, nullable=False),
        sa.Column("slug", _key(200), nullable=False),
        sa.Column("reason", sa.Unicode(length=40), nullable=False),
        sa.Column("detail", _long_text(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("flow_id", _key(100), nullable=True),
        sa.Column("trigger_key", _key(100), nullable=True),
        sa.Column("delivery_id", _key(200), nullable=True),
        sa.PrimaryKeyConstraint("rejection_id", name=op.f("pk_webhook_rejections")),
    )
    op.create_index(op.f("ix_webhook_rejections_at"), "webhook_rejections", ["at"])
    op.create_index("ix_runs_created_at_run_id", "runs", ["created_at", "run_id"])
    op.create_index(
        "ix_runs_flow_id_created_at_run_id", "runs", ["flow_id", "created_at", "run_id"]
    )
    op.create_index("ix_runs_idempotency_key", "runs", ["idempotency_key"])
    op.create_index("ix_runs_source_run_id", "runs", ["source_run_id"])
    op.create_index("ix_step_attempts_completed_at", "step_attempts", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_step_attempts_completed_at", table_name="step_attempts")
    op.drop_index("ix_runs_source_run_id", table_name="runs")
    op.drop_index("ix_runs_idempotency_key", table_name="runs")
    op.drop_index("ix_runs_flow_id_created_at_run_id", table_name="runs")
    op.drop_index("ix_runs_created_at_run_id", table_name="runs")
    op.drop_index(op.f("ix_webhook_rejections_at"), table_name="webhook_rejections")
    op.drop_table("webhook_rejections")
    op.drop_index(op.f("ix_webhook_deliveries_received_at"), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
