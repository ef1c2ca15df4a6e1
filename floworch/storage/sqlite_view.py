"""A read-only view of a floworch SQLite file through the standard library's ``sqlite3``.

Why it exists: ``floworch runs list`` should answer at once, and importing SQLAlchemy and
Alembic alone takes about ten times a bare interpreter's start. This view answers the run list
with ``sqlite3`` (already in every Python) and nothing else.

What it promises:

* it never creates, migrates or alters the file: it opens it read-only (``mode=ro``);
* it answers only when the file's schema is exactly at the newest migration this floworch
  ships (read from the migration files, without Alembic); otherwise :func:`open_view`
  returns None and the caller uses the full SQL store, which migrates or explains;
* it returns what :class:`~floworch.storage.sql.store.SqlStore` returns for the same query
  (``tests/integration/cli/test_sqlite_view.py`` compares the two on real files).

Its statements are fixed text with ``?`` parameters (no value is ever formatted into SQL), a
documented exception to "every statement is SQLAlchemy Core": the view exists to avoid
importing SQLAlchemy, and the comparison test keeps it equal to the Core statements.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

MIGRATIONS = Path(__file__).parent / "sql" / "migrations" / "versions"
_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite")


@dataclass(frozen=True)
class RunSummary:
    """One run of the list view (no trigger body: list views never load it)."""

    run_id: str
    flow_id: str
    status: str
    created_at: datetime
    completed_at: datetime | None
    step_statuses: dict[str, str]


def sqlite_path_of(url: str) -> Path | None:
    """The file of a plain SQLite URL (``sqlite:///x.db``, ``sqlite+aiosqlite:////abs.db``),
    or None for anything else (other databases, query parameters, ``file:`` URIs)."""
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme.lower() not in _SQLITE_SCHEMES:
        return None
    if not rest or "?" in rest or "%" in rest or rest.startswith("file:") or rest == ":memory:":
        return None
    return Path(rest)


def head_revision(directory: Path = MIGRATIONS) -> str | None:
    """The newest migration shipped: the revision no other migration names as its parent."""
    revisions: set[str] = set()
    parents: set[str] = set()
    pattern = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)
    try:
        files = sorted(directory.glob("*.py"))
    except OSError:
        return None
    for file in files:
        for kind, value in pattern.findall(file.read_text(encoding="utf-8")):
            (revisions if kind == "revision" else parents).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class SqliteView:
    """Read-only queries on one SQLite file. Use :func:`open_view`."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def close(self) -> None:
        """Closes the connection."""
        self._db.close()

    def list_runs(
        self, *, flow_id: str | None, statuses: Sequence[str], limit: int
    ) -> list[RunSummary]:
        """Runs newest first (as ``SqlStore.list_runs``), each with its steps' statuses."""
        where: list[str] = []
        params: list[object] = []
        if flow_id is not None:
            where.append("flow_id = ?")
            params.append(flow_id)
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            "SELECT run_id, flow_id, status, created_at, completed_at FROM runs"
            f"{clause} ORDER BY created_at DESC, run_id DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
        steps: dict[str, dict[str, str]] = {row[0]: {} for row in rows}
        ids = list(steps)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for run_id, key, status in self._db.execute(
                "SELECT run_id, step_key, status FROM steps "
                f"WHERE run_id IN ({', '.join('?' for _ in chunk)}) ORDER BY id",
                chunk,
            ):
                steps[run_id][key] = status
        return [
            RunSummary(
                run_id=run_id,
                flow_id=flow,
                status=status,
                created_at=_time(created) or datetime.min.replace(tzinfo=UTC),
                completed_at=_time(completed),
                step_statuses=steps[run_id],
            )
            for run_id, flow, status, created, completed in rows
        ]


def open_view(path: Path) -> SqliteView | None:
    """A view of the file, or None when the full store must answer instead: the file is
    missing or unreadable, or its schema is not exactly at the newest migration."""
    head = head_revision()
    if head is None or not path.is_file():
        return None
    try:
        connection = sqlite3.connect(
            f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=5
        )
    except sqlite3.Error:
        return None
    try:
        (current,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except (sqlite3.Error, TypeError, ValueError):
        connection.close()
        return None
    if current != head:
        connection.close()
        return None
    return SqliteView(connection)
