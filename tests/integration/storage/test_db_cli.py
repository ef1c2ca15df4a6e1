"""``floworch db upgrade / current / prune`` against a SQLite file."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from floworch.cli.db import db_group
from floworch.model.statuses import RunStatus
from floworch.storage.factory import open_store
from floworch.storage.records import RunRecord
from floworch.storage.sql import migrate

from .conftest import running_run


def _finished_run(run_id: str, completed_at: datetime) -> RunRecord:
    started = running_run(run_id, remaining=0, created_at=completed_at)
    return replace(started, status=RunStatus.SUCCEEDED, completed_at=completed_at)


def test_upgrade_then_current(sqlite_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    before = runner.invoke(db_group, ["current", "--db", sqlite_url])
    assert before.exit_code == 0, before.output
    assert "no database yet" in before.output and "floworch db upgrade" in before.output
    assert list(tmp_path.iterdir()) == []  # reading created nothing
    up = runner.invoke(db_group, ["upgrade", "--db", sqlite_url])
    assert up.exit_code == 0, up.output
    assert f"(empty) -> {migrate.head_revision()}" in up.output
    after = runner.invoke(db_group, ["current"], env={"FLOWORCH_DB_URL": sqlite_url})
    assert after.exit_code == 0 and "up to date" in after.output


def test_prune_deletes_old_runs_in_batches(sqlite_url: str) -> None:
    old = datetime.now(UTC) - timedelta(days=40)

    async def seed() -> None:
        store = await open_store(sqlite_url)
        async with store.transaction() as tx:
            for i in range(5):
                await tx.insert_run(_finished_run(f"old-{i}", old))
            await tx.insert_run(_finished_run("new", datetime.now(UTC)))
        await store.close()

    asyncio.run(seed())
    result = CliRunner().invoke(
        db_group, ["prune", "--older-than", "30", "--batch-size", "2", "--db", sqlite_url]
    )
    assert result.exit_code == 0, result.output
    assert "batch 1: deleted 2 runs (2 so far)" in result.output
    assert "batch 3: deleted 1 runs (5 so far)" in result.output
    assert "pruned 5 runs" in result.output

    async def remaining() -> list[str]:
        store = await open_store(sqlite_url)
        runs = [r.run_id for r in await store.unfinished_runs(limit=10)]
        kept = await store.get_run("new")
        await store.close()
        return [*runs, *([kept.run_id] if kept else [])]

    assert asyncio.run(remaining()) == ["new"]


@pytest.mark.parametrize("command", ["current", "upgrade"])
def test_unreachable_database_is_a_clean_cli_error(command: str) -> None:
    result = CliRunner().invoke(db_group, [command, "--db", "postgresql://u:pw@127.0.0.1:1/db"])
    assert result.exit_code == 1
    assert "127.0.0.1" in result.output and "pw@" not in result.output
    assert "Traceback" not in result.output
