"""loop_items: a ForEach's items, one row each, out of the ForEach step's state (which the
engine rewrites whenever an iteration ends, so items there made every iteration cost more the
longer the list).

Runs started before this revision keep their items in the ForEach state; the engine reads them
from there when a loop has no rows here.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import TypeEngine

from floworch import limits
from floworch.storage.sql.column_types import JSONText

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _key(length: int) -> TypeEngine[str]:
    return sa.Unicode(length=length).with_variant(
        sa.NVARCHAR(length=length, collation="Latin1_General_100_BIN2"), "mssql"
    )


def upgrade() -> None:
    op.create_table(
        "loop_items",
        sa.Column("run_id", _key(limits.RUN_ID_MAX_LENGTH), nullable=False),
        sa.Column("step_key", _key(limits.INSTANCE_KEY_MAX_LENGTH), nullable=False),
        sa.Column("item_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("item", JSONText(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_loop_items_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "step_key", "item_index", name=op.f("pk_loop_items")),
    )


def downgrade() -> None:
    op.drop_table("loop_items")
