"""The table of host leases (migration ``0004``): one row per lease name, its holder and expiry."""

from __future__ import annotations

from sqlalchemy import Column, Table

from floworch import limits
from floworch.storage.sql.column_types import UTCDateTime
from floworch.storage.sql.schema import _id, _key, metadata

host_leases = Table(
    "host_leases",
    metadata,
    Column("lease_name", _key(limits.LEASE_NAME_MAX_LENGTH), primary_key=True),
    _id("owner", nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)
