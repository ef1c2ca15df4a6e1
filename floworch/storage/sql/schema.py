"""The SQL schema: SQLAlchemy Core tables for everything the store keeps.

Key lengths come from :mod:`floworch.limits`, which validation checks values against, so a value
validation accepts always fits its column (``tests/unit/test_limits.py`` asserts they agree).
They are chosen so every primary key fits SQL Server's 900-byte index key limit with
``nvarchar`` (two bytes a character). Child tables reference ``runs`` without cascades: SQL
Server forbids multiple cascade paths, and retention deletes children explicitly in batches.
Claims and idempotency keys carry no foreign key on purpose: a claim for an unknown run must be a
clean "run not found" answer, and an idempotency key is registered before its run row exists.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Unicode,
)
from sqlalchemy.dialects import mssql
from sqlalchemy.types import TypeEngine

from floworch import limits
from floworch.storage.sql.column_types import JSONText, LongText, UTCDateTime

ID_LENGTH = limits.RUN_ID_MAX_LENGTH
"""A 100-character id column (run ids, flow ids, trigger keys all share this length today)."""
STEP_KEY_LENGTH = limits.INSTANCE_KEY_MAX_LENGTH
"""Step instance keys (``each.3.charge`` grows with nesting)."""
IDEMPOTENCY_KEY_LENGTH = limits.IDEMPOTENCY_KEY_MAX_LENGTH
STATUS_LENGTH = limits.STATUS_MAX_LENGTH
_ID_LENGTHS = {
    "run_id": limits.RUN_ID_MAX_LENGTH,
    "source_run_id": limits.RUN_ID_MAX_LENGTH,
    "flow_id": limits.FLOW_ID_MAX_LENGTH,
    "trigger_key": limits.TRIGGER_KEY_MAX_LENGTH,
    "signal_name": limits.SIGNAL_NAME_MAX_LENGTH,
    "owner": limits.OWNER_MAX_LENGTH,
    "lease_owner": limits.OWNER_MAX_LENGTH,
}

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


def _key(length: int) -> TypeEngine[str]:
    # SQL Server's default collation is case-insensitive; keys must compare like everywhere else.
    return Unicode(length).with_variant(
        mssql.NVARCHAR(length, collation="Latin1_General_100_BIN2"), "mssql"
    )


# SQLite only auto-numbers a column declared exactly INTEGER PRIMARY KEY.
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")


def _id(name: str, **kwargs: object) -> Column[str]:
    return Column(name, _key(_ID_LENGTHS[name]), **kwargs)  # type: ignore[arg-type]


def _run_id() -> TypeEngine[str]:
    return _key(limits.RUN_ID_MAX_LENGTH)


def _run_fk() -> Column[str]:
    return Column("run_id", _run_id(), ForeignKey("runs.run_id"), nullable=False)


flows = Table(
    "flows",
    metadata,
    _id("flow_id", primary_key=True),
    Column("version", _key(limits.FLOW_VERSION_MAX_LENGTH), nullable=False),
    Column("manifest", JSONText(), nullable=True),
    Column("enabled", Boolean(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    _id("run_id", primary_key=True),
    _id("flow_id", nullable=False),
    Column("flow_version", _key(limits.FLOW_VERSION_MAX_LENGTH), nullable=False),
    _id("trigger_key", nullable=False),
    Column("status", Unicode(STATUS_LENGTH), nullable=False),
    Column("trigger_body", JSONText(), nullable=True),
    Column("trigger_headers", JSONText(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("remaining", Integer(), nullable=False),
    Column("idempotency_key", _key(IDEMPOTENCY_KEY_LENGTH), nullable=True),
    _id("source_run_id", nullable=True),
    Column("completed_at", UTCDateTime(), nullable=True),
    Column("timeout_at", UTCDateTime(), nullable=True),
    Column("cancel_reason", LongText, nullable=True),
    Column("trace_context", JSONText(), nullable=True),
    # Bumped by every run_transaction: the write that takes the run's row lock.
    Column("lock_version", Integer(), nullable=False, default=0),
    # New step rows start after this seq (a manual retry recreates rows; see RunRecord).
    Column("seq_floor", Integer(), nullable=False, default=0, server_default="0"),
    Index(None, "flow_id", "status", "created_at"),
    Index(None, "status", "created_at"),
    Index(None, "status", "timeout_at"),
    Index(None, "status", "completed_at"),
)

steps = Table(
    "steps",
    metadata,
    # A surrogate id gives "creation order" for listing; the natural key is unique below.
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    _run_fk(),
    Column("step_key", _key(STEP_KEY_LENGTH), nullable=False),
    Column("step_type", _key(limits.STEP_TYPE_MAX_LENGTH), nullable=False),
    Column("status", Unicode(STATUS_LENGTH), nullable=False),
    Column("seq", Integer(), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("inputs", JSONText(), nullable=True),
    Column("output", JSONText(), nullable=True),
    Column("error", JSONText(), nullable=True),
    Column("when_trace", JSONText(), nullable=True),
    Column("skip_reason", LongText, nullable=True),
    Column("created_at", UTCDateTime(), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("completed_at", UTCDateTime(), nullable=True),
    Column("due_at", UTCDateTime(), nullable=True),
    _id("lease_owner", nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("state", JSONText(), nullable=True),
    Index(None, "run_id", "step_key", unique=True),
    Index(None, "status", "lease_expires_at"),
)

step_attempts = Table(
    "step_attempts",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    _run_fk(),
    Column("step_key", _key(STEP_KEY_LENGTH), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("seq", Integer(), nullable=False),
    Column("status", Unicode(STATUS_LENGTH), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("completed_at", UTCDateTime(), nullable=False),
    Column("output", JSONText(), nullable=True),
    Column("error", JSONText(), nullable=True),
    Index(None, "run_id", "step_key"),
)

loop_items = Table(
    "loop_items",
    metadata,
    Column("run_id", _run_id(), ForeignKey("runs.run_id"), primary_key=True),
    Column("step_key", _key(STEP_KEY_LENGTH), primary_key=True),
    Column("item_index", Integer(), primary_key=True, autoincrement=False),
    Column("item", JSONText(), nullable=True),
)
"""A ForEach's items, one row each, written once when the loop starts: an iteration reads its
own item and the ForEach row keeps only counters, so its cost does not grow with the items."""

claims = Table(
    "claims",
    metadata,
    _id("run_id", primary_key=True),
    Column("step_key", _key(STEP_KEY_LENGTH), primary_key=True),
    Column("seq", Integer(), primary_key=True, autoincrement=False),
    _id("owner", nullable=False),
    Column("lease_until", UTCDateTime(), nullable=False),
    Column("claimed_at", UTCDateTime(), nullable=False),
)

dispatches = Table(
    "dispatches",
    metadata,
    Column("run_id", _run_id(), ForeignKey("runs.run_id"), primary_key=True),
    Column("step_key", _key(STEP_KEY_LENGTH), primary_key=True),
    Column("seq", Integer(), primary_key=True, autoincrement=False),
    _id("flow_id", nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    # The reconciler's scans: unsent rows by due time, and sent rows by due time.
    Index(None, "sent_at", "due_at"),
    Index(None, "due_at"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    _id("flow_id", primary_key=True),
    _id("trigger_key", primary_key=True),
    Column("idempotency_key", _key(IDEMPOTENCY_KEY_LENGTH), primary_key=True),
    _id("run_id", nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

signal_waiters = Table(
    "signal_waiters",
    metadata,
    Column("run_id", _run_id(), ForeignKey("runs.run_id"), primary_key=True),
    Column("step_key", _key(STEP_KEY_LENGTH), primary_key=True),
    _id("signal_name", nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Column("payload", JSONText(), nullable=True),
    Index(None, "run_id", "signal_name"),
)

buffered_signals = Table(
    "buffered_signals",
    metadata,
    Column("run_id", _run_id(), ForeignKey("runs.run_id"), primary_key=True),
    _id("signal_name", primary_key=True),
    Column("payload", JSONText(), nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("consumed_at", UTCDateTime(), nullable=True),
)

schedule_states = Table(
    "schedule_states",
    metadata,
    _id("flow_id", primary_key=True),
    _id("trigger_key", primary_key=True),
    Column("paused", Boolean(), nullable=False),
    Column("cron_override", _key(limits.CRON_EXPRESSION_MAX_LENGTH), nullable=True),
    Column("last_fire_at", UTCDateTime(), nullable=True),
    Column("next_fire_at", UTCDateTime(), nullable=True),
    Column("pending_sequence_number", BigInteger(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=True),
)

cron_fires = Table(
    "cron_fires",
    metadata,
    _id("flow_id", primary_key=True),
    _id("trigger_key", primary_key=True),
    Column("fire_time", UTCDateTime(), primary_key=True),
    _id("run_id", nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("event_id", _SERIAL, primary_key=True, autoincrement=True),
    _run_fk(),
    Column("kind", _key(limits.EVENT_KIND_MAX_LENGTH), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("step_key", _key(STEP_KEY_LENGTH), nullable=True),
    Column("message", LongText, nullable=False),
    Column("data", JSONText(), nullable=True),
    Index(None, "run_id", "event_id"),
)

RUN_CHILD_TABLES = (
    events,
    loop_items,
    step_attempts,
    claims,
    dispatches,
    signal_waiters,
    buffered_signals,
    steps,
)
"""Tables holding rows owned by a run, in a safe deletion order (before ``runs``)."""

__all__ = [
    "RUN_CHILD_TABLES",
    "buffered_signals",
    "claims",
    "cron_fires",
    "dispatches",
    "events",
    "flows",
    "idempotency_keys",
    "loop_items",
    "metadata",
    "runs",
    "schedule_states",
    "signal_waiters",
    "step_attempts",
    "steps",
]
