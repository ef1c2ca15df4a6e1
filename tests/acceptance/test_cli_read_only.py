"""Read-only commands create and alter no file (issue 16.15): ``runs list`` on a floworch
database another program switched back to a rollback journal keeps it so, and on a mistyped
path creates nothing."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from floworch.model.statuses import RunStatus
from floworch.storage.factory import open_store
from floworch.storage.records import RunRecord
from tests.acceptance.conftest import Cli


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


async def _database_with_a_run(url: str) -> None:
    store = await open_store(url)
    async with store.transaction() as tx:
        await tx.insert_run(
            RunRecord(
                run_id="run-1",
                flow_id="hello",
                flow_version="1",
                trigger_key="manual",
                status=RunStatus.SUCCEEDED,
                trigger_body=None,
                trigger_headers={},
                created_at=datetime(2026, 1, 1, tzinfo=UTC),
                remaining=0,
            )
        )
    await store.close()


@pytest.mark.slow
def test_read_commands_leave_the_database_as_they_found_it(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "shared" / "state.db"
    url = f"sqlite:///{db}"
    asyncio.run(_database_with_a_run(url))
    with sqlite3.connect(db) as conn:  # another program that prefers a rollback journal
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    before = _files(db.parent)
    listed = cli.run("runs", "list", "--db", url)
    assert listed.returncode == 0, listed.stderr
    assert "run-1" in listed.stdout
    current = cli.run("db", "current", "--db", url)
    assert current.returncode == 0 and "up to date" in current.stdout, current.stderr
    assert _files(db.parent) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)

    typo = tmp_path / "typo" / "state.db"
    done = cli.run("runs", "list", "--db", f"sqlite:///{typo}")
    assert done.returncode != 0
    assert "no floworch database" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not typo.parent.exists()
