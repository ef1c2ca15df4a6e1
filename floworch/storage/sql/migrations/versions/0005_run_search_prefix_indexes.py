"""PostgreSQL only: pattern-operator-class indexes for the run list's prefix search.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_runs_run_id_prefix", "run_id"),
    ("ix_runs_idempotency_key_prefix", "idempotency_key"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite and SQL Server use their ordinary indexes for LIKE 'x%'
    for name, column in _INDEXES:
        op.create_index(name, "runs", [column], postgresql_ops={column: "varchar_pattern_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _ in _INDEXES:
        op.drop_index(name, table_name="runs")
