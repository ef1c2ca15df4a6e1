"""What a step transition costs in round trips: PostgreSQL sends held-back writes with the next
statement or the commit (one pipeline), and a claim is one round trip that commits without
waiting for the WAL flush, a setting that never outlives the claim's own transaction."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, datetime, timedelta

import pytest

from floworch.model.statuses import StepStatus
from floworch.storage.factory import open_store
from floworch.storage.records import (
    AttemptRecord,
    ClaimOutcome,
    DispatchRecord,
    EventRecord,
    RunRecord,
    StepRecord,
    step_changes,
)
from floworch.storage.sql.database import SqlStats
from floworch.storage.sql.postgres_db import PgConnection
from floworch.storage.sql.sqlite_db import SqliteConnection
from floworch.storage.sql.store import SqlStore

from .conftest import running_run

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


async def _run_with_step(store: SqlStore) -> RunRecord:
    run = running_run("r1", remaining=3)
    async with store.transaction() as tx:
        await tx.insert_run(run)
        await tx.insert_steps(
            [
                StepRecord("r1", "seed", "Work", StepStatus.SUCCEEDED, output={"x": 1}),
                StepRecord("r1", "a", "Work", StepStatus.PENDING, seq=1, created_at=T0),
            ]
        )
    return run


def _since(store: SqlStore, before: SqlStats) -> tuple[int, int, int]:
    now = store.stats
    return (
        now.statements - before.statements,
        now.round_trips - before.round_trips,
        now.commits - before.commits,
    )


async def _claim_and_complete(
    store: SqlStore, *, prefetch: bool = False
) -> tuple[tuple[int, int, int], ...]:
    """Claims step ``a`` and completes it the way the engine does; the cost of each part.
    With ``prefetch`` the claim reads ``a``'s input row and the completion reads ``a`` and
    its successor ``b`` with the run's lock, as the engine asks."""
    before = SqlStats(*astuple(store.stats))
    claim = await store.claim_step(
        "r1",
        "a",
        1,
        owner="w",
        lease_until=T0 + timedelta(minutes=5),
        now=T0,
        outputs=["seed", "nothing"] if prefetch else (),
    )
    assert claim.outcome == ClaimOutcome.ACQUIRED
    assert sorted(claim.outputs) == (["seed"] if prefetch else [])
    claimed = _since(store, before)
    before = SqlStats(*astuple(store.stats))
    async with store.run_transaction("r1", steps=["a", "b"] if prefetch else ()) as tx:
        done = await tx.update_step(
            "r1", "a", step_changes(status=StepStatus.SUCCEEDED), expect_seq=1
        )
        assert done is not None
        await tx.insert_steps(
            [StepRecord("r1", "b", "Work", StepStatus.PENDING, seq=1, created_at=T0)]
        )
        await tx.record_dispatches([DispatchRecord("r1", "b", 1, "f", T0, T0, None)])
        await tx.update_run("r1", remaining_delta=-1)
        await tx.insert_attempt(
            AttemptRecord("r1", "a", 1, 1, StepStatus.SUCCEEDED, T0, T0, None, None)
        )
        await tx.append_events([EventRecord("r1", "StepSucceeded", T0, "a")])
    return claimed, _since(store, before)


async def _check_completed(store: SqlStore) -> None:
    run = await store.get_run("r1")
    assert run is not None and run.remaining == 2
    steps = {s.step_key: s for s in await store.get_steps("r1")}
    assert sorted(steps) == ["a", "b", "seed"]
    assert steps["a"].status == StepStatus.SUCCEEDED
    due = await store.due_dispatches(
        T0, unsent_grace_until=T0 + timedelta(days=1), sent_stuck_before=T0, limit=10
    )
    assert [(d.step_key, d.seq) for d in due] == [("b", 1)]
    assert len(await store.list_events("r1")) == 1
    assert len(await store.get_attempts("r1")) == 1


@pytest.mark.postgres
async def test_postgres_step_transition_round_trips(pg_store: SqlStore) -> None:
    await _run_with_step(pg_store)
    claimed, completed = await _claim_and_complete(pg_store)
    # BEGIN, SET LOCAL synchronous_commit, the claim's UPDATE, COMMIT: one round trip.
    assert claimed == (4, 1, 1)
    # BEGIN + the run lock; the step update (its answer is read); the new step, its ledger row
    # (new with the step: nothing to read), the run update, the attempt, the event and COMMIT:
    # three round trips for nine statements, one commit.
    assert completed == (9, 3, 1)
    await _check_completed(pg_store)


@pytest.mark.postgres
async def test_postgres_step_transition_with_reads_ahead_takes_three_round_trips(
    pg_store: SqlStore,
) -> None:
    await _run_with_step(pg_store)
    claimed, completed = await _claim_and_complete(pg_store, prefetch=True)
    # The claim's transaction reads the input rows too: still one round trip.
    assert claimed == (5, 1, 1)
    # BEGIN, the run lock and the read of a and b; then every write held back and the COMMIT.
    assert completed == (10, 2, 1)
    await _check_completed(pg_store)


@pytest.mark.postgres
async def test_the_claims_relaxed_commit_stays_inside_its_transaction(
    pg_store: SqlStore,
) -> None:
    await _run_with_step(pg_store)
    await pg_store.claim_step("r1", "a", 1, owner="w", lease_until=T0, now=T0)
    async with pg_store.database.connection(write=True) as conn:
        assert isinstance(conn, PgConnection)  # the pool hands back the claim's connection
        shown = await conn.lane.call(lambda: conn.raw.execute("SHOW synchronous_commit").fetchone())
    assert shown is not None and shown[0] == "on"


async def test_sqlite_full_claims_without_fsync_and_restores_full(sqlite_url: str) -> None:
    store = await open_store(sqlite_url + "?synchronous=full")
    assert isinstance(store, SqlStore)
    try:
        await _run_with_step(store)
        traced: list[str] = []
        async with store.database.connection(write=True) as conn:
            assert isinstance(conn, SqliteConnection)
            conn.raw.set_trace_callback(traced.append)
        claimed, completed = await _claim_and_complete(store)
        assert claimed[2] == 1 and completed[2] == 1
        claim = next(i for i, sql in enumerate(traced) if sql.startswith("UPDATE steps"))
        assert traced[claim - 1] == "PRAGMA synchronous = NORMAL"
        assert traced[claim + 1] == "PRAGMA synchronous = FULL"
        assert "PRAGMA synchronous = NORMAL" not in traced[claim + 1 :]  # the completion: FULL
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_starting_a_run_is_one_round_trip(pg_store: SqlStore) -> None:
    # A run this transaction inserts is its own until commit: its first step's ledger row needs
    # no answer either, so the run, the step, the ledger row, the event and COMMIT go together.
    before = SqlStats(*astuple(pg_store.stats))
    async with pg_store.transaction() as tx:
        await tx.insert_run(running_run("r2", remaining=1))
        await tx.insert_steps(
            [StepRecord("r2", "a", "Work", StepStatus.PENDING, seq=1, created_at=T0)]
        )
        ledger = [DispatchRecord("r2", "a", 1, "f", T0, T0, None)]
        assert await tx.record_dispatches(ledger) == ledger
        await tx.append_events([EventRecord("r2", "RunStarted", T0)])
    assert _since(pg_store, before) == (6, 1, 1)
    assert [s.step_key for s in await pg_store.get_steps("r2")] == ["a"]
    assert [e.kind for e in await pg_store.list_events("r2")] == ["RunStarted"]
