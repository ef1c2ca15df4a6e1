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


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; refuses naive datetimes on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

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

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.NVARCHAR())
        return dialect.type_descriptor(UnicodeText())

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(value)
