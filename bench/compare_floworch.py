"""floworch's side of ``bench/compare.py``: one backend, some workloads, JSON lines on stdout.

Run by ``compare.py`` in a fresh process per round (as each peer is), with the project's own
virtualenv. It follows the peers' method (``shared/bench-peers/benchlib.py``): the same no-op step
bodies, one warm-up run, then N timed runs each after an idle pause, time = start the workflow ->
result in the client, median of the timed runs. A floworch run here is what ``floworch run``
does: an :class:`EmbeddedHost` over the store, ``engine.trigger`` then ``engine.wait_for_run``
(whose RunState carries every step's output).

After the timed runs it checks, in the store, that every run succeeded, that every step row
succeeded at attempt 1 with exactly one attempt recorded, and that each handler ran exactly once
per step (an in-process counter), so a run that skipped or repeated steps fails the record.
SQL statements (``BEGIN`` and ``COMMIT`` included), round trips (PostgreSQL sends held-back
statements together), commits and connections opened are read from
the store's own counters (``SqlStore.stats``: the adapter runs statements on the drivers'
connections, not through SQLAlchemy's execution, so SQLAlchemy's event hooks see none of them)
over the timed runs and divided by the number of step transitions.

Usage (normally through compare.py)::

    python bench/compare_floworch.py --backend sqlite --workloads chain1,chain100 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.embedded import EmbeddedHost
from floworch.model import load_manifest
from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.factory import open_store
from floworch.storage.port import Store

FANOUT_WIDTH = 100
CHAIN_SIZES = {"chain1": 1, "chain100": 100, "chain1000": 1000}
WORKLOADS = ("chain1", "chain100", "fanout100", "chain1000")
BACKENDS = ("memory", "sqlite", "sqlite-full", "postgresql")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def steps_of(workload: str) -> int:
    """How many steps a workload runs (what per-step figures divide by)."""
    return CHAIN_SIZES.get(workload, FANOUT_WIDTH + 2)


def chain_manifest(n: int) -> dict[str, Any]:
    """Step k gets step k-1's output; the last output must be ``{"i": n}``."""
    steps: dict[str, Any] = {"s1": {"type": "Chain", "inputs": {"i": 0}}}
    for k in range(2, n + 1):
        steps[f"s{k}"] = {
            "type": "Chain",
            "inputs": f"@steps('s{k - 1}').output",
            "runAfter": {f"s{k - 1}": ["Succeeded"]},
        }
    return {"id": f"chain{n}", "version": "1", "steps": steps}


def fanout_manifest(width: int) -> dict[str, Any]:
    """One seed step, ``width`` parallel steps, one join over all their outputs."""
    steps: dict[str, Any] = {"first": {"type": "FanFirst"}}
    for i in range(width):
        steps[f"m{i}"] = {
            "type": "FanMid",
            "inputs": {"seed": "@steps('first').output", "i": i},
            "runAfter": {"first": ["Succeeded"]},
        }
    steps["join"] = {
        "type": "FanJoin",
        "inputs": {"parts": [f"@steps('m{i}').output" for i in range(width)]},
        "runAfter": {f"m{i}": ["Succeeded"] for i in range(width)},
    }
    return {"id": f"fanout{width}", "version": "1", "steps": steps}


def manifest_for(workload: str) -> dict[str, Any]:
    if workload in CHAIN_SIZES:
        return chain_manifest(CHAIN_SIZES[workload])
    return fanout_manifest(FANOUT_WIDTH)


def result_of(workload: str, outputs: dict[str, Any]) -> Any:
    """The workflow's result: the last chain step's output, or the join's."""
    if workload in CHAIN_SIZES:
        return outputs[f"s{CHAIN_SIZES[workload]}"]
    return outputs["join"]


def check_result(workload: str, result: Any) -> None:
    if workload in CHAIN_SIZES:
        want: Any = {"i": CHAIN_SIZES[workload]}
    else:
        want = {"n": FANOUT_WIDTH, "sum": sum(1 + i for i in range(FANOUT_WIDTH))}
    if result != want:
        raise AssertionError(f"{workload}: bad result {result!r}, want {want!r}")


@dataclass
class Calls:
    """How often each (run, step) handler ran: must be exactly once."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def registry(self) -> HandlerRegistry:
        registry = HandlerRegistry()

        async def chain(ctx: StepContext, inputs: Any) -> Any:
            self.counts[(ctx.run_id, ctx.step_key)] += 1
            return {"i": inputs["i"] + 1}

        async def fan_first(ctx: StepContext, inputs: Any) -> Any:
            self.counts[(ctx.run_id, ctx.step_key)] += 1
            return {"seed": 1}

        async def fan_mid(ctx: StepContext, inputs: Any) -> Any:
            self.counts[(ctx.run_id, ctx.step_key)] += 1
            return {"i": inputs["i"], "v": inputs["seed"]["seed"] + inputs["i"]}

        async def fan_join(ctx: StepContext, inputs: Any) -> Any:
            self.counts[(ctx.run_id, ctx.step_key)] += 1
            parts = inputs["parts"]
            return {"n": len(parts), "sum": sum(p["v"] for p in parts)}

        registry.register("Chain", chain)
        registry.register("FanFirst", fan_first)
        registry.register("FanMid", fan_mid)
        registry.register("FanJoin", fan_join)
        return registry


class SqlCounters:
    """Statements, round trips, commits and connections the SQL store sent, counted only while
    a timed run is in flight (not the reconciler's idle ticks between runs)."""

    FIELDS = ("statements", "round_trips", "commits", "connections")

    def __init__(self, store: Store) -> None:
        self._stats: Any = getattr(store, "stats", None)
        self.totals = dict.fromkeys(self.FIELDS, 0)
        self._start: dict[str, int] | None = None

    @property
    def enabled(self) -> bool:
        return self._stats is not None

    def _now(self) -> dict[str, int]:
        return {name: getattr(self._stats, name) for name in self.FIELDS}

    def resume(self) -> None:
        if self.enabled:
            self._start = self._now()

    def pause(self) -> None:
        if self.enabled and self._start is not None:
            now = self._now()
            for name in self.FIELDS:
                self.totals[name] += now[name] - self._start[name]
            self._start = None


async def verify_store(store: Store, run_ids: list[str], steps: int, calls: Calls) -> str:
    """Checks each run in the store: succeeded, every step once; returns a one-line verdict."""
    for run_id in run_ids:
        run = await store.get_run(run_id)
        if run is None or run.status != RunStatus.SUCCEEDED:
            raise AssertionError(f"run {run_id} is {run and run.status}, not Succeeded")
        rows = await store.get_steps(run_id)
        if len(rows) != steps:
            raise AssertionError(f"run {run_id} has {len(rows)} step rows, want {steps}")
        bad = [r.step_key for r in rows if r.status != StepStatus.SUCCEEDED or r.attempt != 1]
        if bad:
            raise AssertionError(f"run {run_id}: steps not succeeded at attempt 1: {bad[:5]}")
        attempts = Counter(a.step_key for a in await store.get_attempts(run_id))
        if len(attempts) != steps or set(attempts.values()) != {1}:
            raise AssertionError(f"run {run_id}: attempt rows are not one per step: {attempts}")
        ran = [calls.counts[(run_id, r.step_key)] for r in rows]
        if set(ran) != {1}:
            raise AssertionError(f"run {run_id}: handler call counts {Counter(ran)}, want all 1")
    return f"ok: {len(run_ids)} runs x {steps} steps, each succeeded once (rows, attempts, calls)"


async def measure_workload(
    url: str, backend: str, workload: str, runs: int, pause: float, concurrency: int | None
) -> dict[str, Any]:
    steps = steps_of(workload)
    record: dict[str, Any] = {
        "engine": f"floworch-{backend}",
        "workload": workload,
        "steps": steps,
        "runs": runs,
    }
    calls = Calls()
    manifest = load_manifest(manifest_for(workload))
    store = await open_store(url)
    counters = SqlCounters(store)
    settings_kwargs: dict[str, Any] = {}
    if concurrency is not None:
        settings_kwargs["concurrency"] = concurrency
    from floworch.hosting.embedded import EmbeddedSettings

    try:
        async with EmbeddedHost(
            store=store,
            flows=[manifest],
            handlers=calls.registry(),
            settings=EmbeddedSettings(**settings_kwargs),
        ) as host:

            async def one() -> tuple[str, Any]:
                started = await host.engine.trigger(manifest.id)
                assert started.run_id is not None
                state = await host.engine.wait_for_run(started.run_id, timeout=600)
                outputs = {key: s.output for key, s in state.steps.items()}
                return started.run_id, result_of(workload, outputs)

            run_ids: list[str] = []
            began = time.perf_counter()
            run_id, result = await one()  # warm-up, not timed
            check_result(workload, result)
            run_ids.append(run_id)
            record["warmup_s"] = round(time.perf_counter() - began, 4)
            times: list[float] = []
            for _ in range(runs):
                await asyncio.sleep(pause)
                counters.resume()
                began = time.perf_counter()
                run_id, result = await one()
                times.append(time.perf_counter() - began)
                counters.pause()
                check_result(workload, result)
                run_ids.append(run_id)
            transitions = steps * runs
            if counters.enabled:
                totals = counters.totals
                record["stmts_per_step"] = round(totals["statements"] / transitions, 2)
                record["round_trips_per_step"] = round(totals["round_trips"] / transitions, 2)
                record["commits_per_step"] = round(totals["commits"] / transitions, 2)
                record["checkouts_per_step"] = round(totals["connections"] / transitions, 2)
        record["check"] = await verify_store(store, run_ids, steps, calls)
    finally:
        await store.close()
    median = statistics.median(times)
    record.update(
        status="ok",
        times_s=[round(t, 4) for t in times],
        median_s=round(median, 4),
        steps_per_s=round(steps / median, 1),
        ms_per_step=round(1000 * median / steps, 3),
    )
    return record


class Backend:
    """A database for one child process: created at start, dropped at the end."""

    def __init__(self, name: str, pg_url: str) -> None:
        self.name = name
        self._pg_url = pg_url
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._schema: str | None = None

    def url(self, workload: str) -> str:
        if self.name == "memory":
            return "memory://"
        if self.name.startswith("sqlite"):
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="floworch-bench-")
            path = Path(self._tmp.name) / f"{workload}.db"
            return f"sqlite:///{path}" + ("?synchronous=full" if self.name == "sqlite-full" else "")
        if self._schema is None:
            self._schema = f"floworch_bench_{uuid.uuid4().hex[:10]}"
            engine = create_engine(self._pg_url)
            with engine.begin() as conn:
                conn.execute(CreateSchema(self._schema))
            engine.dispose()
        options = {"options": f"-csearch_path={self._schema}"}
        return make_url(self._pg_url).update_query_dict(options).render_as_string(False)

    def drop(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
        if self._schema is not None:
            engine = create_engine(self._pg_url)
            with engine.begin() as conn:
                conn.execute(DropSchema(self._schema, cascade=True))
            engine.dispose()


async def main_async(args: argparse.Namespace) -> int:
    backend = Backend(args.backend, args.pg)
    try:
        for workload in args.workloads.split(","):
            try:
                record = await measure_workload(
                    backend.url(workload),
                    args.backend,
                    workload,
                    args.runs,
                    args.pause,
                    args.concurrency,
                )
            except Exception as exc:  # one failed workload must not hide the others
                record = {
                    "engine": f"floworch-{args.backend}",
                    "workload": workload,
                    "steps": steps_of(workload),
                    "status": "error",
                    "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                }
            print(json.dumps(record), flush=True)
    finally:
        backend.drop()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--pause", type=float, default=0.5, help="idle seconds before each run")
    parser.add_argument("--concurrency", type=int, default=None, help="in-process workers")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL")
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
