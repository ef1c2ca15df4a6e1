"""Rows read with a run's lock are read after it (PostgreSQL sends the lock and the read in one
pipeline): a completion that waited for the lock sees what the previous holder committed, so two
predecessors of one join finishing at once cannot both miss each other."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from floworch.model.statuses import StepStatus
from floworch.storage.records import StepRecord, step_changes
from floworch.storage.sql.store import SqlStore

from .conftest import running_run

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
_WAITING_FOR_THE_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE runs SET lock_version%'"
)


def _wait_until_a_lock_is_awaited(store: SqlStore, deadline: float) -> None:
    with store.engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(_WAITING_FOR_THE_LOCK).scalar():
                return
            conn.rollback()  # a fresh snapshot of pg_stat_activity
            time.sleep(0.01)
    raise AssertionError("the second transaction never waited for the run's lock")


@pytest.mark.postgres
async def test_a_read_with_the_lock_sees_the_previous_holders_commit(pg_store: SqlStore) -> None:
    run = running_run("r1", remaining=2)
    async with pg_store.transaction() as tx:
        await tx.insert_run(run)
        await tx.insert_steps([StepRecord("r1", "a", "Work", StepStatus.RUNNING, created_at=T0)])

    async def second() -> dict[str, StepRecord]:
        async with pg_store.run_transaction("r1", steps=["a", "b"]) as tx:
            return await tx.get_steps("r1", ["a", "b"])

    async with pg_store.run_transaction("r1") as first:
        done = await first.update_step("r1", "a", step_changes(status=StepStatus.SUCCEEDED))
        assert done is not None
        await first.insert_steps([StepRecord("r1", "b", "Work", StepStatus.PENDING, seq=1)])
        waiting = asyncio.create_task(second())
        # Commit only once the second transaction is blocked on the lock, its read sent too.
        await asyncio.to_thread(_wait_until_a_lock_is_awaited, pg_store, time.monotonic() + 20)
    seen = await waiting
    assert sorted(seen) == ["a", "b"]
    assert seen["a"].status == StepStatus.SUCCEEDED
