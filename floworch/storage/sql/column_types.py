"""Column types that behave the same on SQLite, PostgreSQL and SQL Server.

``UTCDateTime`` keeps every timestamp timezone-aware UTC: ``timestamptz`` on PostgreSQL,
``datetimeoffset`` on SQL Server, and on SQLite (which has no timezone type) naive UTC text in
one fixed format, so that text comparison in ``WHERE`` clauses orders like time.
``JSONText`` stores JSON as text (``nvarchar(max)`` on SQL Server) because the three databases
disagree on native JSON types and the engine never queries inside JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, UnicodeText
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

LongText = UnicodeText().with_variant(mssql.NVARCHAR(), "mssql")
"""Unbounded text: ``nvarchar(max)`` on SQL Server (never the deprecated ``ntext``)."""


def _utc_text(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: floworch stores timezone-aware UTC only")
    # SQLAlchemy's SQLite storage format, byte for byte: "2026-01-01 12:00:00.000000".
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _utc_from_text(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _utc_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: floworch stores timezone-aware UTC only")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _utc_from_driver(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; refuses naive datetimes on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @staticmethod
    def driver_processors(dialect: Dialect) -> tuple[Any, Any] | None:
        """(bind, result) processors doing what this type and the dialect's own do, in one step,
        for the adapter's compiled statements (None: use SQLAlchemy's)."""
        if dialect.name == "sqlite":
            return _utc_text, _utc_from_text
        if dialect.name == "postgresql":
            return _utc_aware, _utc_from_driver
        return None

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: floworch stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite compares the stored text; one offset-free format keeps that ordering right.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - drivers return datetime objects
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            naive: datetime = value
            return naive.replace(tzinfo=UTC)
        aware: datetime = value.astimezone(UTC)
        return aware


class JSONText(TypeDecorator[Any]):
    """A JSON value stored as text; SQL NULL reads back as None."""

    impl = UnicodeText
    cache_ok = True

    @staticmethod
    def driver_processors(dialect: Dialect) -> tuple[Any, Any] | None:
        """(bind, result) processors for the adapter's compiled statements (see UTCDateTime)."""
        if dialect.name in ("sqlite", "postgresql"):
            return _json_text, json.loads
        return None

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.NVARCHAR())
        return dialect.type_descriptor(UnicodeText())

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _json_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(value)
