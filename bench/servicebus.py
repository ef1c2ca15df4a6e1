"""Benchmark floworch on the Service Bus runtime: real ``floworch worker`` processes on the local
emulator, sharing one PostgreSQL schema (SQLite when PostgreSQL is absent, with a note).

Prints, for 1 and 4 worker processes:
- step transitions per second through a chain of N steps, a fan-out of N (N = ``--steps``), and
  N transitions spread over N/5 runs of a 5-step chain started at once;
- per-transition latency p50/p99 in the chain: the successor's handler start (``time.time()``
  recorded by the handler into its output) minus the predecessor's ``completed_at`` in the DB;
and with 4 workers:
- signal delivery -> the resumed step's successor starts (``Engine.deliver_signal`` called in this
  process with a ServiceBusDispatcher; the clock starts just before the call);
- cron fire lag (a per-second cron for ``--cron-seconds``; lag = run ``created_at`` - fire time);
- the emulator's own send -> receive time, measured alone, so that the engine's share of a
  transition can be read off (transition p50 minus the round trip p50 of a receiver asking for
  as many messages as a worker does).

Everything listens on loopback; every subprocess is stopped on exit. Figures, not pass/fail.
Run: ``.venv/bin/python bench/servicebus.py [--steps 200] [--db URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from floworch.engine.engine import Engine
from floworch.engine.handlers import HandlerRegistry
from floworch.model import load_manifest
from floworch.runtime.servicebus.dispatcher import ServiceBusDispatcher
from floworch.storage.factory import open_store
from floworch.storage.port import Store

PG_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SHORT_STEPS = 5
RUN_TIMEOUT = 240.0

HANDLERS = """
import time

import floworch


@floworch.handler("Stamp")
async def stamp(inputs):
    return {"start": time.time()}
"""

TARGETS = {
    "throughput": ">= 500 transitions/s with 4 workers",
    "overhead": "< 5 ms p50",
    "signal": "< 100 ms",
    "cron": "< 1 s",
}


# -- set-up: flows, topology, database, processes -----------------------------------------------


def chain(n: int) -> dict[str, Any]:
    keys = [f"s{i:04d}" for i in range(n)]
    steps: dict[str, Any] = {keys[0]: {"type": "Stamp"}}
    for prev, key in itertools.pairwise(keys):
        steps[key] = {"type": "Stamp", "runAfter": {prev: ["Succeeded"]}}
    return steps


def fan(n: int) -> dict[str, Any]:
    steps: dict[str, Any] = {"start": {"type": "Stamp"}}
    for i in range(n):
        steps[f"w{i:04d}"] = {"type": "Stamp", "runAfter": {"start": ["Succeeded"]}}
    steps["join"] = {"type": "Stamp", "runAfter": {f"w{i:04d}": ["Succeeded"] for i in range(n)}}
    return steps


def write_flows(folder: Path, n: int) -> None:
    manifests: dict[str, dict[str, Any]] = {
        "warm": {"steps": chain(10)},
        "chain": {"steps": chain(n)},
        "fan": {"steps": fan(n)},
        "short": {"steps": chain(SHORT_STEPS)},
        "signal": {
            "steps": {
                "wait": {"type": "WaitForSignal", "inputs": {"signalName": "go"}},
                "after": {"type": "Stamp", "runAfter": {"wait": ["Succeeded"]}},
            }
        },
        "tick": {
            "triggers": {"every": {"type": "Cron", "cron": "* * * * * *"}},
            "steps": {"stamp": {"type": "Stamp"}},
        },
    }
    for flow_id, body in manifests.items():
        manifest = {"id": flow_id, "version": "1", **body}
        (folder / f"{flow_id}.json").write_text(json.dumps(manifest))
    (folder.parent / "handlers.py").write_text(HANDLERS)


def topology(path: Path, flows: Path) -> None:
    """The flows' topology as ``floworch topology export`` writes it (so it matches the entities
    the workers receive from), plus the bare ``rt`` topic of the emulator round-trip figure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWORCH_")}
    subprocess.run(
        [
            *(sys.executable, "-m", "floworch", "topology", "export"),
            *("--flows", str(flows), "--out", str(path), "--schema-ref", ""),
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    document = json.loads(path.read_text())
    document.setdefault("topics", []).append({"name": "rt", "subscriptions": [{"name": "s"}]})
    path.write_text(json.dumps(document))


@contextlib.contextmanager
def database(url: str | None, folder: Path) -> Iterator[tuple[str, str]]:
    """The database URL to use and a line describing it."""
    if url is not None:
        yield url, f"database: {make_url(url).render_as_string(hide_password=True)} (--db)"
        return
    engine = create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
    schema = f"floworch_bench_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(CreateSchema(schema))
    except Exception as exc:
        engine.dispose()
        note = (
            f"database: SQLite file (NOTE: PostgreSQL at 127.0.0.1:5432 is not reachable: "
            f"{type(exc).__name__}; SQLite serialises writers, so these figures understate "
            "what the workers do on a server database)"
        )
        yield f"sqlite:///{folder / 'bench.db'}", note
        return
    try:
        options = {"options": f"-csearch_path={schema}"}
        yield (
            make_url(PG_SERVER_URL).update_query_dict(options).render_as_string(False),
            f"database: PostgreSQL 127.0.0.1:5432, fresh schema {schema}",
        )
    finally:
        with engine.begin() as conn:
            conn.execute(DropSchema(schema, cascade=True))
        engine.dispose()


class Processes:
    """The emulator and the workers; everything started here is stopped by ``stop_all``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start_emulator(self, topology_file: Path) -> str:
        """Start the emulator with ``--json``; return the data-plane connection string from the
        first stdout line that is a JSON object (other lines, such as ``#`` comments, skipped)."""
        log_path = self.folder / "emulator.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "floworch.emulator"),
                    *("--topology", str(topology_file), "--json"),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self.procs.append(proc)
        assert proc.stdout is not None
        seen = []
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            try:
                document = json.loads(line)
            except ValueError:
                seen.append(line)
                continue
            if isinstance(document, dict) and "connectionString" in document:
                return str(document["connectionString"])
            seen.append(line)
        tail = log_path.read_text(errors="replace").splitlines()[-10:]
        raise RuntimeError(
            f"the emulator did not print its connection string (exit {proc.wait()}); "
            f"stdout: {seen!r}; stderr tail:\n" + "\n".join(tail)
        )

    def worker_logs(self) -> str:
        tails = []
        for path in sorted(self.folder.glob("worker-*.log")):
            lines = path.read_text(errors="replace").splitlines()
            tails.append(f"--- {path.name}\n" + "\n".join(lines[-15:]))
        return "\n".join(tails)

    def start_workers(self, count: int, db: str, connection: str) -> list[int]:
        ports = []
        for _ in range(count):
            port = free_port()
            log = open(self.folder / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "floworch",
                    "worker",
                    str(self.folder / "flows"),
                    "--handlers",
                    str(self.folder / "handlers.py"),
                    "--db",
                    db,
                    "--connection",
                    connection,
                    "--health-port",
                    str(port),
                    "--grace",
                    "5",
                    "--log-level",
                    "WARNING",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()  # the child has its own copy
            self.procs.append(proc)
            ports.append(port)
        return ports

    def stop(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()

    def stop_workers(self) -> None:
        workers = self.procs[1:]
        self.procs = self.procs[:1]
        self.stop(workers)

    def stop_all(self) -> None:
        procs, self.procs = self.procs, []
        self.stop(list(reversed(procs)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_ready(
    ports: list[int], procs: list[subprocess.Popen[bytes]], timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                ready = await asyncio.to_thread(readyz, port)
            except OSError:
                ready = False
            if ready:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"worker with health port {port} not ready or exited")
            await asyncio.sleep(0.2)


def readyz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status) == 200
    except urllib.error.HTTPError:
        return False


# -- measuring ----------------------------------------------------------------------------------


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


@dataclass
class Figures:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, what: str, value: str, target: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else (" (met)" if met else " (MISSED)")
        self.rows.append((what, value, target + verdict))
        print(f"  {what:<58} {value:>18}  {target}{verdict}", flush=True)


async def wait_run(store: Store, run_id: str) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        run = await store.get_run(run_id)
        if run is not None and run.completed_at is not None:
            return run
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} not finished after {RUN_TIMEOUT:g}s")
        await asyncio.sleep(0.1)


async def run_flow(engine: Engine, flow_id: str) -> tuple[Any, dict[str, Any]]:
    started = await engine.trigger(flow_id)
    assert started.run_id is not None
    run = await wait_run(engine.store, started.run_id)
    if run.status != "Succeeded":
        raise RuntimeError(f"{flow_id} run {run.run_id} ended {run.status}")
    steps = {step.step_key: step for step in await engine.store.get_steps(run.run_id)}
    return run, steps


def started(step: Any) -> float:
    return float(step.output["start"])


async def chain_figures(engine: Engine, n: int, workers: int, figures: Figures) -> None:
    run, steps = await run_flow(engine, "chain")
    seconds = (run.completed_at - run.created_at).total_seconds()
    keys = sorted(steps)
    hops = [
        started(steps[key]) - steps[prev].completed_at.timestamp()
        for prev, key in itertools.pairwise(keys)
    ]
    figures.samples[f"hops{workers}"] = hops
    figures.add(f"chain of {n}: transitions/s", f"{n / seconds:.1f}")
    figures.add(
        "chain: transition latency p50 / p99", f"{ms(pct(hops, 0.5))} / {ms(pct(hops, 0.99))}"
    )


async def fan_figures(engine: Engine, n: int, workers: int, figures: Figures) -> None:
    run, steps = await run_flow(engine, "fan")
    seconds = (run.completed_at - run.created_at).total_seconds()
    first = steps["start"].completed_at.timestamp()
    last_start = max(started(step) for key, step in steps.items() if key.startswith("w"))
    rate = (n + 2) / seconds
    label = f"fan-out of {n} (+start, join): transitions/s"
    if workers == 4:
        figures.add(label, f"{rate:.1f}", TARGETS["throughput"], rate >= 500)
    else:
        figures.add(label, f"{rate:.1f}")
    figures.add("fan-out: start done -> last branch handler starts", ms(last_start - first))


async def many_runs_figures(engine: Engine, n: int, workers: int, figures: Figures) -> None:
    """N transitions spread over N / 5 runs of a 5-step chain started at once: no run's row
    lock is shared by more than one step at a time."""
    count = max(1, n // SHORT_STEPS)
    results = await asyncio.gather(*(engine.trigger("short") for _ in range(count)))
    runs = [await wait_run(engine.store, r.run_id) for r in results if r.run_id is not None]
    if any(run.status != "Succeeded" for run in runs):
        raise RuntimeError("a short chain run failed")
    began = min(run.created_at for run in runs)
    seconds = (max(run.completed_at for run in runs) - began).total_seconds()
    rate = count * SHORT_STEPS / seconds
    label = f"{count} runs of a {SHORT_STEPS}-step chain at once: transitions/s"
    if workers == 4:
        figures.add(label, f"{rate:.1f}", TARGETS["throughput"], rate >= 500)
    else:
        figures.add(label, f"{rate:.1f}")


async def signal_figures(engine: Engine, count: int, figures: Figures) -> None:
    run_ids = []
    for _ in range(count):
        result = await engine.trigger("signal")
        assert result.run_id is not None
        run_ids.append(result.run_id)
    deadline = time.monotonic() + RUN_TIMEOUT
    for run_id in run_ids:  # every run waits for its signal before the clock starts
        while True:
            steps = {s.step_key: s for s in await engine.store.get_steps(run_id)}
            if "wait" in steps and steps["wait"].status == "Waiting":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"signal run {run_id} never reached its wait")
            await asyncio.sleep(0.05)
    latencies = []
    for run_id in run_ids:
        sent = time.time()
        outcome = await engine.deliver_signal(run_id, "go", {"n": 1})
        if outcome != "Delivered":
            raise RuntimeError(f"signal to {run_id}: {outcome}")
        run = await wait_run(engine.store, run_id)
        after = {s.step_key: s for s in await engine.store.get_steps(run.run_id)}["after"]
        latencies.append(started(after) - sent)
    figures.add(
        f"signal delivered -> successor handler starts p50 (n={count})",
        ms(pct(latencies, 0.5)),
        TARGETS["signal"],
        pct(latencies, 0.5) < 0.1,
    )


async def cron_figures(engine: Engine, seconds: float, figures: Figures) -> None:
    await engine.set_schedule("tick", "every", paused=False)
    resumed = time.time()
    await asyncio.sleep(seconds)
    await engine.set_schedule("tick", "every", paused=True)
    paused = time.time()
    await asyncio.sleep(1.5)  # runs of the last fires get created
    from floworch.storage.records import RunQuery

    runs = await engine.store.list_runs(RunQuery(flow_id="tick", limit=10_000))
    lags = []
    for run in runs:
        fire = datetime.fromisoformat(run.trigger_headers["X-Floworch-Fire-Time"]).timestamp()
        if resumed <= fire <= paused:
            lags.append(run.created_at.timestamp() - fire)
    if not lags:
        figures.add("cron: fire time -> run created", "no runs", TARGETS["cron"])
        return
    figures.add(
        f"cron fire lag p50 / max ({len(lags)} fires in {seconds:g} s)",
        f"{ms(pct(lags, 0.5))} / {ms(max(lags))}",
        TARGETS["cron"],
        pct(lags, 0.5) < 1.0,
    )


async def emulator_round_trips(connection: str, figures: Figures) -> dict[int, float]:
    """send -> receive on a bare topic, for a receiver asking for 1 (what a worker's pump asks
    for) and for 8 messages (which shows the SDK's 0.2 s batch collection wait)."""
    result = {}
    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_topic_sender("rt") as sender,
        client.get_subscription_receiver("rt", "s") as receiver,
    ):
        for count in (1, 8):
            samples = []
            for i in range(40 if count == 1 else 25):
                pending = asyncio.create_task(
                    receiver.receive_messages(max_message_count=count, max_wait_time=5)
                )
                await asyncio.sleep(0.02)  # the receive is outstanding, as a worker's would be
                began = time.perf_counter()
                await sender.send_messages(ServiceBusMessage(f"m{i}"))
                got = await pending
                took = time.perf_counter() - began
                for message in got:
                    await receiver.complete_message(message)
                if i >= 5:  # warm-up excluded
                    samples.append(took)
            result[count] = pct(samples, 0.5)
            figures.add(
                f"emulator send -> receive p50, receiver asks for {count}", ms(result[count])
            )
    return result


# -- the run ------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, db: str, procs: Processes, connection: str) -> None:
    figures = Figures()
    store = await open_store(db)
    flows = [
        load_manifest(json.loads(p.read_text())) for p in (procs.folder / "flows").glob("*.json")
    ]
    async with ServiceBusClient.from_connection_string(connection) as client:
        dispatcher = ServiceBusDispatcher(client)
        engine = Engine(
            store=store,
            dispatcher=dispatcher,
            flows=flows,
            handlers=HandlerRegistry(),
            check_handlers=False,
        )
        try:
            await engine.sync_flows()
            await engine.set_schedule("tick", "every", paused=True)
            print("emulator alone:")
            round_trip = await emulator_round_trips(connection, figures)
            for workers in (1, 4):
                print(f"{workers} worker process(es):", flush=True)
                began = time.monotonic()
                try:
                    await wait_ready(procs.start_workers(workers, db, connection), procs.procs)
                except RuntimeError:
                    print(procs.worker_logs())
                    raise
                figures.add("workers ready", f"{time.monotonic() - began:.1f} s")
                await run_flow(engine, "warm")
                await chain_figures(engine, args.steps, workers, figures)
                await fan_figures(engine, args.steps, workers, figures)
                await many_runs_figures(engine, args.steps, workers, figures)
                if workers == 4:
                    overhead = pct(figures.samples["hops4"], 0.5) - round_trip[1]
                    figures.add(
                        "engine overhead per transition p50 (see notes)",
                        ms(overhead),
                        TARGETS["overhead"],
                        overhead < 0.005,
                    )
                    await signal_figures(engine, args.signals, figures)
                    await cron_figures(engine, args.cron_seconds, figures)
                await asyncio.to_thread(procs.stop_workers)
        finally:
            await dispatcher.close()
            await store.close()
    print(
        "notes: transition latency = successor handler start (time.time() in the handler) - "
        "predecessor completed_at (DB);\n"
        "  it covers: result + ledger commit, send, broker, the worker's receive, claim commit, "
        "input resolution, handler call.\n"
        "  engine overhead = chain transition p50 (4 workers) - emulator send->receive p50 for a "
        "receiver asking for 1\n"
        "  (the worker's pump receives one message per call: asking for more makes the SDK "
        "collect for 0.2 s more).\n"
        "  A run's step results commit one at a time under the run's row lock, so one fan-out run "
        "gains little from more workers;\n"
        "  the many-runs line spreads the work over runs (each worker still takes at most 8 "
        "messages at a time, --concurrency).\n"
        f"  Emulator, PostgreSQL, workers and this process share this machine's {os.cpu_count()} "
        "CPU(s)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="N: chain length and fan-out width")
    parser.add_argument("--db", help="database URL (default: a fresh PostgreSQL schema)")
    parser.add_argument("--signals", type=int, default=20, help="signal deliveries to time")
    parser.add_argument("--cron-seconds", type=float, default=10.0, help="cron phase length")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="floworch-bench-") as tmp:
        folder = Path(tmp)
        (folder / "flows").mkdir()
        write_flows(folder / "flows", args.steps)
        topology(folder / "topology.json", folder / "flows")
        procs = Processes(folder)
        try:
            with database(args.db, folder) as (db, description):
                print(description)
                connection = procs.start_emulator(folder / "topology.json")
                print("emulator: its own process on loopback; workers: `floworch worker` processes")
                try:
                    asyncio.run(bench(args, db, procs, connection))
                finally:
                    procs.stop_all()
        finally:
            procs.stop_all()
    print(f"total {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
