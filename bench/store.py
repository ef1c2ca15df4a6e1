"""Store-level step transitions per second on SQLite (file) and PostgreSQL.

One transition is the engine's hot path for one step, against the store alone:
``claim_step``; a ``run_transaction`` that reads the step and its successor with the run's lock
(as the engine's completion does), finishes the step, inserts the successor's step row and
ledger row (chain) or decrements the run's remaining count (fan-out leaves) and appends an
event; then ``mark_dispatched``. Statements (BEGIN and COMMIT included), round trips and
commits are the store's own counters (``SqlStore.stats``).

Run: ``.venv/bin/python bench/store.py [--pg URL] [--skip-pg]``. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.factory import open_store
from floworch.storage.records import (
    DispatchRecord,
    EventRecord,
    RunRecord,
    StepRecord,
    step_changes,
)
from floworch.storage.sql.store import SqlStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = NOW + timedelta(minutes=5)


@dataclass
class Counter:
    statements: int = 0
    round_trips: int = 0
    commits: int = 0


def count_statements(store: SqlStore) -> Counter:
    """Counts from now on (the store's stats, read again in :func:`measure`)."""
    return Counter(store.stats.statements, store.stats.round_trips, store.stats.commits)


def _run(run_id: str, remaining: int) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        flow_id="bench",
        flow_version="1",
        trigger_key="manual",
        status=RunStatus.RUNNING,
        trigger_body={"n": 1},
        trigger_headers={},
        created_at=NOW,
        remaining=remaining,
    )


def _step(run_id: str, key: str) -> StepRecord:
    return StepRecord(run_id, key, "Work", StepStatus.PENDING, created_at=NOW)


def _ledger(run_id: str, key: str) -> DispatchRecord:
    return DispatchRecord(run_id, key, 1, "bench", due_at=NOW, created_at=NOW)


async def transition(store: SqlStore, run_id: str, key: str, successor: str | None) -> None:
    """One step's hot path: claim, complete (+ successor + ledger + event), mark sent."""
    claim = await store.claim_step(run_id, key, 1, owner="w", lease_until=LEASE, now=NOW)
    assert claim.acquired, claim.outcome
    # Read ahead with the lock, as the engine's completion does: the step and its successor.
    ahead = [key] if successor is None else [key, successor]
    async with store.run_transaction(run_id, steps=ahead) as tx:
        await tx.update_step(
            run_id,
            key,
            step_changes(status=StepStatus.SUCCEEDED, output={"ok": True}, completed_at=NOW),
            expect_seq=1,
            expect_statuses=[StepStatus.RUNNING],
        )
        fresh: list[DispatchRecord] = []
        if successor is not None:
            await tx.insert_steps([_step(run_id, successor)])
            fresh = await tx.record_dispatches([_ledger(run_id, successor)])
        else:
            await tx.update_run(run_id, remaining_delta=-1)
        await tx.append_events([EventRecord(run_id, "StepSucceeded", NOW, step_key=key)])
    if fresh:
        await store.mark_dispatched([(d.run_id, d.step_key, d.seq) for d in fresh], NOW)


async def chain(store: SqlStore, length: int) -> int:
    run_id = uuid.uuid4().hex
    async with store.transaction() as tx:
        await tx.insert_run(_run(run_id, 1))
        await tx.insert_steps([_step(run_id, "s0")])
        await tx.record_dispatches([_ledger(run_id, "s0")])
    for i in range(length):
        await transition(store, run_id, f"s{i}", f"s{i + 1}" if i + 1 < length else None)
    return length


async def fan_out(store: SqlStore, width: int, workers: int) -> int:
    run_id = uuid.uuid4().hex
    async with store.transaction() as tx:
        await tx.insert_run(_run(run_id, width))
    keys = [f"each.{i}" for i in range(width)]
    async with store.run_transaction(run_id) as tx:  # the fan-out step's completion
        await tx.insert_steps([_step(run_id, key) for key in keys])
        fresh = await tx.record_dispatches([_ledger(run_id, key) for key in keys])
    await store.mark_dispatched([(d.run_id, d.step_key, d.seq) for d in fresh], NOW)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(key)

    async def worker() -> None:
        while not queue.empty():
            await transition(store, run_id, queue.get_nowait(), None)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return width


async def measure(
    store: SqlStore, label: str, workers: int, work: Callable[[], Awaitable[int]]
) -> tuple[str, int, int, float, float, float, float]:
    counter = count_statements(store)
    started = time.perf_counter()
    transitions = await work()
    elapsed = time.perf_counter() - started
    return (
        label,
        workers,
        transitions,
        transitions / elapsed,
        (store.stats.statements - counter.statements) / transitions,
        (store.stats.round_trips - counter.round_trips) / transitions,
        (store.stats.commits - counter.commits) / transitions,
    )


async def bench_backend(name: str, url: str, pg: bool) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    worker_counts = (1, 4) if pg else (1,)
    for workers in worker_counts:
        for length in (100, 1000):
            store = await open_store(url)
            assert isinstance(store, SqlStore)

            async def chains(
                length: int = length, store: SqlStore = store, workers: int = workers
            ) -> int:
                done = await asyncio.gather(*(chain(store, length) for _ in range(workers)))
                return sum(done)

            rows.append((name, *await measure(store, f"chain {length}", workers, chains)))
            await store.close()
        store = await open_store(url)
        assert isinstance(store, SqlStore)

        async def wide(store: SqlStore = store, workers: int = workers) -> int:
            return await fan_out(store, 1000, workers)

        rows.append((name, *await measure(store, "fan-out 1000", workers, wide)))
        await store.close()
    return rows


def _pg_schema(base: str) -> tuple[str, Callable[[], None]]:
    schema = f"floworch_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(CreateSchema(schema))

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(DropSchema(schema, cascade=True))
        engine.dispose()

    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), drop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[Any, ...]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += await bench_backend("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", pg=False)
    if not args.skip_pg:
        url, drop = _pg_schema(args.pg)
        try:
            rows += await bench_backend("postgresql", url, pg=True)
        finally:
            drop()
    header = (
        "backend",
        "shape",
        "workers",
        "transitions",
        "per second",
        "stmts/tr",
        "trips/tr",
        "tx/tr",
    )
    print(" | ".join(f"{h:>12}" for h in header))
    for backend, shape, workers, n, rate, stmts, trips, txs in rows:
        print(
            f"{backend:>12} | {shape:>12} | {workers:>12} | {n:>12} | {rate:>12.0f} | "
            f"{stmts:>12.2f} | {trips:>12.2f} | {txs:>12.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
