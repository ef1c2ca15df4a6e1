"""Opening a store read-only changes nothing on disk, and a file floworch did not set up keeps
its journal mode (issue 16.15: any command switched another program's SQLite file to WAL for
good, and ``runs list`` on a mistyped path created a database)."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from floworch.errors import SchemaVersionError, StorageError
from floworch.storage.factory import open_store
from floworch.storage.records import RunQuery, RunRecord

from .conftest import running_run

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run(run_id: str) -> RunRecord:
    return replace(running_run(run_id, created_at=T0), trigger_body={"x": 1})


def _journal(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


async def test_a_missing_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "floworch.db"
    with pytest.raises(StorageError, match=r"no floworch database at .*typo.*--db"):
        await open_store(f"sqlite:///{missing}", read_only=True)
    assert not missing.exists() and not missing.parent.exists()


async def test_reading_changes_no_byte_and_keeps_the_journal_mode(tmp_path: Path) -> None:
    path = tmp_path / "floworch.db"
    store = await open_store(f"sqlite:///{path}")
    async with store.transaction() as tx:
        await tx.insert_run(_run("kept"))
    await store.close()
    with sqlite3.connect(path) as conn:  # as another program that prefers a rollback journal
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    before = _digest(tmp_path)

    reader = await open_store(f"sqlite:///{path}", read_only=True)
    try:
        assert [r.run_id for r in await reader.list_runs(RunQuery())] == ["kept"]
        assert (await reader.get_run("kept")) == _run("kept")
        with pytest.raises(StorageError, match="read-only"):
            async with reader.transaction() as tx:
                await tx.insert_run(_run("lost"))
    finally:
        await reader.close()
    assert _digest(tmp_path) == before
    assert _journal(path) == "delete"


async def test_a_file_without_floworch_schema_keeps_its_journal_mode(tmp_path: Path) -> None:
    path = tmp_path / "other-program.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    assert _journal(path) == "delete"
    with pytest.raises(SchemaVersionError):
        await open_store(f"sqlite:///{path}", migrate=False)
    with pytest.raises(SchemaVersionError):
        await open_store(f"sqlite:///{path}", read_only=True)
    assert _journal(path) == "delete"
    # Once floworch migrated a file it is floworch's, and WAL is switched on.
    store = await open_store(f"sqlite:///{path}")
    await store.close()
    assert _journal(path) == "wal"
