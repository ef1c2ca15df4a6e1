"""host_leases: one row per host lease (the Function App's background pass runs in one instance
at a time).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import TypeEngine

from floworch.storage.sql.column_types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _key(length: int) -> TypeEngine[str]:
    return sa.Unicode(length=length).with_variant(
        sa.NVARCHAR(length=length, collation="Latin1_General_100_BIN2"), "mssql"
    )


def upgrade() -> None:
    op.create_table(
        "host_leases",
        sa.Column("lease_name", _key(100), nullable=False),
        sa.Column("owner", _key(100), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("lease_name", name=op.f("pk_host_leases")),
    )


def downgrade() -> None:
    op.drop_table("host_leases")
