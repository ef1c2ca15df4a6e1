"""Telemetry overhead on step throughput: the same runs with export off, to Azure Monitor and to
OTLP/HTTP (real exporters, capture servers on loopback), in memory and on SQLite.

Usage::

    python bench/telemetry.py                    # 3 rounds, chain-200 and foreach-400-20
    python bench/telemetry.py --rounds 5 --shapes chain-500

Each measurement runs in a fresh process (telemetry is configured once per process), and the
modes are interleaved round by round so that load on the machine hits them alike. Figures are
medians over the rounds: steps per wall second and CPU microseconds per step of the process
(export work on the SDK's background threads included), and the overhead against ``off``.
The final flush at exit is timed apart and not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODES = ("off", "azure-monitor", "otlp")


def shape(name: str) -> dict[str, Any]:
    kind, *sizes = name.split("-")
    if kind == "chain":
        n = int(sizes[0])
        steps: dict[str, Any] = {"s0": {"type": "Noop"}}
        for i in range(1, n):
            steps[f"s{i}"] = {"type": "Noop", "runAfter": {f"s{i - 1}": ["Succeeded"]}}
        return steps
    if kind == "foreach":
        n, limit = int(sizes[0]), int(sizes[1])
        return {
            "each": {
                "type": "ForEach",
                "forEach": list(range(n)),
                "concurrencyLimit": limit,
                "steps": {"body": {"type": "Noop", "inputs": "@item()"}},
            }
        }
    raise SystemExit(f"unknown shape {name!r}: chain-N or foreach-N-LIMIT")


async def child(args: argparse.Namespace) -> dict[str, Any]:
    from floworch.engine.consumer import StepConsumer
    from floworch.engine.engine import Engine
    from floworch.engine.handlers import HandlerRegistry
    from floworch.hosting.observability import start_telemetry
    from floworch.model import load_manifest
    from floworch.runtime.memory import InProcessDispatcher
    from floworch.storage.factory import open_store
    from floworch.storage.memory import MemoryStore

    telemetry = start_telemetry(os.environ, service_name="floworch-bench")
    assert (telemetry is None) == (args.export == "off"), telemetry
    handlers = HandlerRegistry()

    @handlers.handler("Noop")
    async def noop(ctx: Any, inputs: Any) -> Any:
        ctx.logger.info("step %s", ctx.step_key)  # a log record per step, exported when on
        return None

    manifest = load_manifest({"id": args.shape, "version": "1", "steps": shape(args.shape)})
    store = MemoryStore() if args.db == "memory" else await open_store(args.db)
    dispatcher = InProcessDispatcher(concurrency=16)
    engine = Engine(store=store, dispatcher=dispatcher, flows=[manifest], handlers=handlers)
    await engine.sync_flows()
    dispatcher.start(StepConsumer(engine).handle)
    try:
        began, cpu = time.perf_counter(), time.process_time()
        result = await engine.trigger(args.shape)
        assert result.run_id is not None
        run = await engine.wait_for_run(result.run_id, timeout=600, poll_interval=0.005)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    finally:
        await dispatcher.stop()
        await store.close()
    flush = time.perf_counter()
    if telemetry is not None:
        telemetry.shutdown()
    flush = time.perf_counter() - flush
    if run.status != "Succeeded":
        raise SystemExit(f"run ended {run.status}")
    return {"steps": len(run.steps), "seconds": seconds, "cpu": cpu, "flush": flush}


def run_child(mode: str, db: str, shape_name: str, capture: dict[str, str]) -> dict[str, Any]:
    from floworch.testing.telemetry_capture import QUIET_AZURE_MONITOR

    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))
    }
    env.update(QUIET_AZURE_MONITOR)
    env["PYTHONPATH"] = str(ROOT)
    if mode == "azure-monitor":
        env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = capture["azure-monitor"]
    elif mode == "otlp":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = capture["otlp"]
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--db", db, "--shapes", shape_name],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} {db} {shape_name} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default="chain-200,foreach-400-20")
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--db", default="memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.export, args.shape = args.child, args.shapes
        print(json.dumps(asyncio.run(child(args))))
        return

    sys.path.insert(0, str(ROOT))
    from floworch.testing.telemetry_capture import AppInsightsCapture, OtlpCapture

    appinsights, otlp = AppInsightsCapture(), OtlpCapture()
    capture = {"azure-monitor": appinsights.connection_string, "otlp": otlp.endpoint}
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for round_ in range(args.rounds):
                for store in args.stores.split(","):
                    for shape_name in args.shapes.split(","):
                        for mode in MODES:
                            db = "memory"
                            if store == "sqlite":
                                db = f"sqlite:///{tmp}/bench-{round_}-{shape_name}-{mode}.db"
                            key = (store, shape_name, mode)
                            results.setdefault(key, []).append(
                                run_child(mode, db, shape_name, capture)
                            )
        finally:
            appinsights.stop()
            otlp.stop()
    print(
        f"rounds: {args.rounds} (medians); envelopes received by the capture servers: "
        f"{len(appinsights.envelopes())} App Insights, {len(otlp.spans())} OTLP spans"
    )
    print(
        f"{'store':<8}{'shape':<17}{'export':<15}{'steps':>6}{'steps/s':>10}"
        f"{'CPU us/step':>13}{'overhead':>10}{'flush s':>9}"
    )
    for store in args.stores.split(","):
        for shape_name in args.shapes.split(","):
            base = None
            for mode in MODES:
                runs = results[(store, shape_name, mode)]
                rate = statistics.median(r["steps"] / r["seconds"] for r in runs)
                cpu = statistics.median(r["cpu"] / r["steps"] * 1e6 for r in runs)
                flush = statistics.median(r["flush"] for r in runs)
                base = base if base is not None else cpu
                overhead = f"{(cpu / base - 1) * 100:+.0f}%" if mode != "off" else "-"
                print(
                    f"{store:<8}{shape_name:<17}{mode:<15}{runs[0]['steps']:>6}{rate:>10,.0f}"
                    f"{cpu:>13,.0f}{overhead:>10}{flush:>9.2f}"
                )


if __name__ == "__main__":
    main()
