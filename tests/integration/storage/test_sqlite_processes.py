"""Several processes on one SQLite file: a fresh file is migrated once while the others wait
(issue 9.8), and concurrent embedded runs never fail with "database is locked" (issue 16.9).

The processes are forked from the test process (floworch is already imported, so each starts in
milliseconds) and start together behind a barrier, which is what makes the race likely.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings
from floworch.model import load_manifest
from floworch.storage.factory import open_store
from floworch.storage.records import RunQuery
from floworch.storage.sql import migrate

from .conftest import running_run

FORK = multiprocessing.get_context("fork")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHAIN = {
    "id": "chain5",
    "version": "1",
    "steps": {
        "s0": {"type": "Tick", "inputs": {"i": 0}},
        **{
            f"s{i}": {
                "type": "Tick",
                "inputs": f"@steps('s{i - 1}').output",
                "runAfter": {f"s{i - 1}": ["Succeeded"]},
            }
            for i in range(1, 5)
        },
    },
}


def _open_and_write(url: str, barrier: Any, results: Any, index: int) -> None:
    async def main() -> list[str]:
        barrier.wait(timeout=60)
        store = await open_store(url)
        try:
            async with store.transaction() as tx:
                await tx.insert_run(running_run(f"run-{index}", created_at=T0))
            return sorted(r.run_id for r in await store.list_runs(RunQuery(limit=100)))
        finally:
            await store.close()

    _report(results, index, main)


def _run_a_flow(url: str, barrier: Any, results: Any, index: int) -> None:
    async def main() -> str:
        handlers = HandlerRegistry()
        handlers.register("Tick", lambda inputs: {"i": inputs["i"] + 1})
        barrier.wait(timeout=60)
        store = await open_store(url)
        try:
            async with EmbeddedHost(
                store=store,
                flows=[load_manifest(CHAIN)],
                handlers=handlers,
                settings=EmbeddedSettings(concurrency=2),
            ) as host:
                started = await host.engine.trigger("chain5")
                assert started.run_id is not None
                run = await host.engine.wait_for_run(started.run_id, timeout=120)
                return f"{run.status} {run.steps['s4'].output}"
        finally:
            await store.close()

    _report(results, index, main)


def _report(results: Any, index: int, main: Any) -> None:
    try:
        results.put((index, "ok", asyncio.run(main())))
    except BaseException as exc:
        results.put((index, "error", f"{type(exc).__name__}: {exc}"))


def _in_processes(target: Any, url: str, count: int) -> dict[int, tuple[str, Any]]:
    barrier = FORK.Barrier(count)
    results = FORK.Queue()
    workers = [FORK.Process(target=target, args=(url, barrier, results, i)) for i in range(count)]
    for worker in workers:
        worker.start()
    found: dict[int, tuple[str, Any]] = {}
    try:
        for _ in range(count):
            index, status, value = results.get(timeout=180)
            found[index] = (status, value)
    except queue.Empty:
        pytest.fail(f"only {len(found)} of {count} processes reported: {found}")
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    return found


@pytest.mark.slow
def test_processes_opening_one_fresh_file_migrate_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    found = _in_processes(_open_and_write, url, 6)
    errors = {i: v for i, (status, v) in found.items() if status != "ok"}
    assert errors == {}, errors
    # Every process saw its own run (and the schema the first one created).
    assert all(f"run-{i}" in runs for i, (_, runs) in found.items())

    async def check() -> tuple[list[str], str | None]:
        store = await open_store(url, migrate=False)
        try:
            runs = sorted(r.run_id for r in await store.list_runs(RunQuery(limit=100)))
            return runs, await migrate.current_revision(store.engine)  # type: ignore[attr-defined]
        finally:
            await store.close()

    runs, revision = asyncio.run(check())
    assert runs == sorted(f"run-{i}" for i in range(6))
    assert revision == migrate.head_revision()
    journal = sqlite3.connect(tmp_path / "fresh.db").execute("PRAGMA journal_mode").fetchone()
    assert journal == ("wal",)


@pytest.mark.slow
def test_concurrent_embedded_runs_on_one_fresh_file_all_finish(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    found = _in_processes(_run_a_flow, url, 8)
    assert found == {i: ("ok", "Succeeded {'i': 5}") for i in range(8)}
