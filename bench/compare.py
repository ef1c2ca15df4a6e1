"""floworch against its peers, side by side: one invocation, interleaved rounds, one table.

Engines (each round runs every selected engine once, in a fresh process, in a rotating order):

- floworch on ``memory``, ``sqlite`` (the default durability: WAL, synchronous=NORMAL),
  ``sqlite-full`` (fsync per commit, ``?synchronous=full``: DBOS's durability) and
  ``postgresql``, through the embedded host as ``floworch run`` uses it;
- ``dbos`` (SQLite), ``dbos-pg`` (PostgreSQL) and ``celery`` (Redis, not durable), from the peers'
  own scripts in ``shared/bench-peers`` with their virtualenvs outside the project.

Workloads are the peers': chain1 (latency), chain100, fanout100 (102 steps), chain1000. Each
engine does one warm-up and ``--runs`` timed runs per workload after an idle pause; the figure of
a round is the median; the table shows the median over rounds, steps/s, and floworch/peer speed
ratios as the median of per-round ratios (``peer seconds / floworch seconds``: above 1 means
floworch is faster). Every run's result is checked, and each store is checked afterwards: every
floworch step succeeded exactly once (rows, attempt history, handler calls), DBOS's
operation_outputs rows equal the steps it executed. For floworch's SQL backends it also prints
SQL statements (BEGIN/COMMIT included), round trips, commits and connections opened per step
transition.

Usage::

    .venv/bin/python bench/compare.py                         # everything, 2 rounds (~15 min)
    .venv/bin/python bench/compare.py --quick                 # chain1,chain100,fanout100; 1 round
    .venv/bin/python bench/compare.py --floworch sqlite,sqlite-full --peers dbos --rounds 3
    .venv/bin/python bench/compare.py --peers none --workloads chain100

Figures, not pass/fail. A peer whose virtualenv cannot be built is skipped with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_floworch import BACKENDS, DEFAULT_PG, WORKLOADS, steps_of  # noqa: E402
from compare_peers import PEERS, PeerRun, ensure_venv, find_peers_dir, run_peer  # noqa: E402

PAIRS = (
    ("floworch-sqlite", "dbos"),
    ("floworch-sqlite-full", "dbos"),
    ("floworch-postgresql", "dbos-pg"),
    ("floworch-sqlite", "celery"),
)
"""(floworch engine, peer) pairs whose speed ratio the table shows."""

Records = dict[tuple[str, str], list[dict[str, Any]]]
"""(engine, workload) -> one record per round."""


def _csv(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    if value.strip().lower() == "none":
        return []
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {', '.join(allowed)} or none")
    return items


def run_floworch(backend: str, args: argparse.Namespace) -> PeerRun:
    command = [
        sys.executable,
        str(HERE / "compare_floworch.py"),
        "--backend",
        backend,
        "--workloads",
        ",".join(args.workloads),
        "--runs",
        str(args.runs),
        "--pause",
        str(args.pause),
        "--pg",
        args.pg,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return PeerRun([], "", f"floworch-{backend} did not finish within {args.timeout:.0f} s")
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    error = None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        error = f"floworch-{backend} exited with {done.returncode}: {tail[0][:300]}"
    return PeerRun(records, "store checked per workload", error)


def _fmt_seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _median_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if r.get("status") == "ok" and key in r]
    return statistics.median(values) if values else None


def print_tables(records: Records, engines: list[str], workloads: list[str]) -> None:
    print("\n## Medians (median over rounds of each round's median; steps/s = steps / median)\n")
    print("| workload | " + " | ".join(engines) + " |")
    print("|---|" + "---:|" * len(engines))
    for workload in workloads:
        cells = []
        for engine in engines:
            found = records.get((engine, workload), [])
            median = _median_of(found, "median_s")
            if median is None:
                errors = [r.get("error", r.get("status")) for r in found]
                cells.append(f"failed ({errors[0]})" if errors else "-")
            else:
                cells.append(f"{_fmt_seconds(median)} ({steps_of(workload) / median:,.0f}/s)")
        print(f"| {workload} | " + " | ".join(cells) + " |")
    pairs = [(f, p) for f, p in PAIRS if f in engines and p in engines]
    if pairs:
        print(
            "\n## Speed ratios: peer s / floworch s, median of per-round ratios "
            "(>1: floworch faster)\n"
        )
        print("| workload | " + " | ".join(f"{f} vs {p}" for f, p in pairs) + " |")
        print("|---|" + "---:|" * len(pairs))
        for workload in workloads:
            cells = []
            for ours, peer in pairs:
                ratios = [
                    p["median_s"] / o["median_s"]
                    for o, p in zip(
                        records.get((ours, workload), []),
                        records.get((peer, workload), []),
                        strict=False,
                    )
                    if o.get("status") == "ok" and p.get("status") == "ok"
                ]
                cells.append(f"{statistics.median(ratios):.2f}x" if ratios else "-")
            print(f"| {workload} | " + " | ".join(cells) + " |")
    sql = [e for e in engines if e.startswith("floworch-") and e != "floworch-memory"]
    if sql:
        print("\n## floworch SQL per step transition (timed runs, the store's counters)\n")
        print("| engine | workload | statements | round trips | commits | connections opened |")
        print("|---|---|---:|---:|---:|---:|")
        for engine in sql:
            for workload in workloads:
                found = records.get((engine, workload), [])
                keys = ("stmts_per_step", "round_trips_per_step", "commits_per_step")
                values = [_median_of(found, k) for k in (*keys, "checkouts_per_step")]
                if values[0] is None:
                    continue
                cells = " | ".join("-" if v is None else f"{v:.2f}" for v in values)
                print(f"| {engine} | {workload} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--floworch", default=",".join(BACKENDS), help="floworch backends")
    parser.add_argument("--peers", default=",".join(PEERS), help="peers, or none")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per round (+1 warm-up)")
    parser.add_argument("--pause", type=float, default=0.5, help="idle seconds before each run")
    parser.add_argument("--quick", action="store_true", help="1 round of chain1..fanout100")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL")
    parser.add_argument("--peers-dir", type=Path, help="shared/bench-peers (default: found)")
    parser.add_argument("--no-peer-setup", action="store_true", help="never build peer venvs")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per engine run")
    parser.add_argument("--jsonl", type=Path, help="append every record here")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
        if args.workloads == ",".join(WORKLOADS):
            args.workloads = "chain1,chain100,fanout100"
    args.workloads = _csv(args.workloads, WORKLOADS, "workloads")
    engines = [f"floworch-{b}" for b in _csv(args.floworch, BACKENDS, "floworch backends")]
    peers = _csv(args.peers, PEERS, "peers")
    peers_dir = args.peers_dir or find_peers_dir(HERE.parent)
    pythons: dict[str, Path] = {}
    for peer in peers:
        if peers_dir is None:
            print(f"[compare] skip {peer}: shared/bench-peers not found (give --peers-dir)")
            continue
        python, why = ensure_venv(peers_dir, peer, setup=not args.no_peer_setup)
        if python is None:
            print(f"[compare] skip {peer}: {why}")
            continue
        pythons[peer] = python
    engines += list(pythons)
    load = (
        " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if os.path.exists("/proc/loadavg")
        else "?"
    )
    print(
        f"# compare: {len(engines)} engines x {len(args.workloads)} workloads x {args.rounds} "
        f"rounds ({args.runs} timed runs each), {os.cpu_count()} cpu, load {load}"
    )
    records: Records = defaultdict(list)
    checks: dict[str, set[str]] = defaultdict(set)
    for round_no in range(args.rounds):
        order = engines[round_no % len(engines) :] + engines[: round_no % len(engines)]
        for engine in order:
            began = time.perf_counter()
            if engine in pythons:
                assert peers_dir is not None
                result = run_peer(
                    engine,
                    pythons[engine],
                    peers_dir,
                    workloads=args.workloads,
                    runs=args.runs,
                    pause=args.pause,
                    pg_url=args.pg,
                    timeout=args.timeout,
                )
            else:
                result = run_floworch(engine.removeprefix("floworch-"), args)
            for record in result.records:
                record["round"] = round_no
                records[(engine, record["workload"])].append(record)
                if record.get("check"):
                    checks[engine].add(f"{record['workload']}: {record['check']}")
                if args.jsonl is not None:
                    with args.jsonl.open("a") as out:
                        out.write(json.dumps(record) + "\n")
            if result.check:
                checks[engine].add(result.check)
            summary = ", ".join(
                f"{r['workload']} {_fmt_seconds(r['median_s'])}"
                if r.get("status") == "ok"
                else f"{r['workload']} {r.get('status')}: {r.get('error', '')}"
                for r in result.records
            )
            note = f" ERROR {result.error}" if result.error else ""
            print(
                f"[round {round_no + 1}] {engine} ({time.perf_counter() - began:.0f} s): "
                f"{summary}{note}",
                flush=True,
            )
    print_tables(records, engines, args.workloads)
    print("\n## Checks\n")
    for engine in engines:
        for line in sorted(checks.get(engine, {"no records"})):
            print(f"- {engine}: {line}")


if __name__ == "__main__":
    main()
