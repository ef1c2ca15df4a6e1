"""The control plane's tables (webhook deliveries and rejections) and the indexes its run
listing needs, registered on the one schema ``metadata`` (migration ``0002``).

The run list is newest first with keyset paging: ``(created_at, run_id)`` for every run and
``(flow_id, created_at, run_id)`` for one flow; a text search matches run id and idempotency key
prefixes; reruns are found by ``source_run_id``; step durations are read by completion time.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, Unicode

from floworch.storage.sql.column_types import LongText, UTCDateTime
from floworch.storage.sql.schema import (
    _SERIAL,
    ID_LENGTH,
    _id,
    _key,
    metadata,
    runs,
    step_attempts,
)

DELIVERY_ID_LENGTH = 200
REASON_LENGTH = 40
SLUG_LENGTH = 200

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    _id("flow_id", primary_key=True),
    _id("trigger_key", primary_key=True),
    Column("delivery_id", _key(DELIVERY_ID_LENGTH), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
    _id("run_id", nullable=True),
    Index(None, "received_at"),
)

webhook_rejections = Table(
    "webhook_rejections",
    metadata,
    Column("rejection_id", _SERIAL, primary_key=True, autoincrement=True),
    Column("slug", _key(SLUG_LENGTH), nullable=False),
    Column("reason", Unicode(REASON_LENGTH), nullable=False),
    Column("detail", LongText, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    _id("flow_id", nullable=True),
    _id("trigger_key", nullable=True),
    Column("delivery_id", _key(DELIVERY_ID_LENGTH), nullable=True),
    Index(None, "at"),
)

RUN_LIST_INDEXES = (
    Index("ix_runs_created_at_run_id", runs.c.created_at, runs.c.run_id),
    Index("ix_runs_flow_id_created_at_run_id", runs.c.flow_id, runs.c.created_at, runs.c.run_id),
    Index("ix_runs_idempotency_key", runs.c.idempotency_key),
    Index("ix_runs_source_run_id", runs.c.source_run_id),
    Index("ix_step_attempts_completed_at", step_attempts.c.completed_at),
    # The run list's prefix search (``LIKE 'x%'``): PostgreSQL uses a btree index for it only
    # with the pattern operator class unless the database collation is exactly "C" (C.UTF-8 is
    # not), so without these it scanned every run by created_at (91 ms over 100,000 runs).
    Index(
        "ix_runs_run_id_prefix", runs.c.run_id, postgresql_ops={"run_id": "varchar_pattern_ops"}
    ).ddl_if(dialect="postgresql"),
    Index(
        "ix_runs_idempotency_key_prefix",
        runs.c.idempotency_key,
        postgresql_ops={"idempotency_key": "varchar_pattern_ops"},
    ).ddl_if(dialect="postgresql"),
)

__all__ = [
    "DELIVERY_ID_LENGTH",
    "ID_LENGTH",
    "RUN_LIST_INDEXES",
    "webhook_deliveries",
    "webhook_rejections",
]
