"""runs.seq_floor: new step rows of a run start after it, so a recreated step (a manual retry
deletes and recreates a ForEach's rows) never reuses a message id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-02-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("seq_floor", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("seq_floor")
