"""Benchmark the Azure Functions host: cold start of ``function_app.py``, and steps per second
through the function entry points.

Prints:
- cold start: wall time of a fresh ``python -c "import function_app;
  function_app.app.get_functions()"`` (import + indexing, as the Functions worker does at start)
  with the repository's flows (2) and with 50 generated flows, beside a bare ``python -c pass``;
  median of ``--repeat`` processes each;
- steps/s: a chain of N no-op steps (N = ``--steps``) started over the ``http`` function and
  run by the step functions, which :class:`~floworch.hosting.functions.local.LocalFunctionsHost`
  drives from the local emulator (a subprocess) as the Functions host would (auto-complete,
  ``maxConcurrentCalls`` from host.json); one chain alone (each step waits for the previous
  one), then ``--runs`` chains at once; on SQLite and on PostgreSQL at 127.0.0.1:5432 (database
  ``test``, a fresh schema) when it is reachable.

Figures, not pass/fail; no Functions host or Azure is involved (see docs/functions.md).
Run: ``.venv/bin/python bench/functions.py [--steps 50] [--runs 8] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FLOW_ID = "chain"
INDEX = "import function_app; function_app.app.get_functions()"
NOOP_HANDLERS = """import floworch


@floworch.handler("Noop")
async def noop(inputs):
    return None
"""
_OWN_SETTINGS = ("FLOWORCH_", "OTEL_", "APPLICATIONINSIGHTS_", "ServiceBusConnection")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)}
    return {**env, **extra}


# -- cold start ----------------------------------------------------------------------------------


def wall(code: str, env: dict[str, str], repeat: int) -> float:
    """Median wall time, in seconds, of ``python -c code`` in a fresh process at the root."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fifty_flows(folder: Path, count: int = 50) -> Path:
    """``count`` small flows with a trigger of each kind the plan turns into functions."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        manifest = {
            "id": f"flow-{i:02d}",
            "version": "1",
            "triggers": {"manual": {"type": "Manual"}},
            "steps": {
                "a": {"type": "Noop"},
                "b": {"type": "Noop", "runAfter": {"a": ["Succeeded"]}},
            },
        }
        (folder / f"flow_{i:02d}.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "handlers.py").write_text(NOOP_HANDLERS, encoding="utf-8")
    return folder


def cold_start(repeat: int, folder: Path) -> None:
    bare = wall("pass", clean_env(), repeat)
    print(f"cold start (median of {repeat} fresh processes, cwd = repository root)")
    print(f"  {'python -c pass':<60}{bare * 1000:7.0f} ms")
    for label, env in (
        ("function_app.py, 2 flows (flows/)", clean_env()),
        ("function_app.py, 50 flows", clean_env(FLOWORCH_FLOWS=str(fifty_flows(folder)))),
    ):
        found = wall(INDEX, env, repeat)
        print(
            f"  import + get_functions(), {label:<34}{found * 1000:7.0f} ms"
            f"   ({(found - bare) * 1000:.0f} ms over bare Python)"
        )


# -- steps/s -------------------------------------------------------------------------------------


def chain_manifest(n: int) -> dict[str, Any]:
    keys = [f"s{i:04d}" for i in range(n)]
    steps: dict[str, Any] = {keys[0]: {"type": "Noop"}}
    for prev, key in itertools.pairwise(keys):
        steps[key] = {"type": "Noop", "runAfter": {prev: ["Succeeded"]}}
    return {"id": FLOW_ID, "version": "1", "steps": steps}


@contextlib.contextmanager
def emulator(folder: Path, flows_file: Path) -> Iterator[str]:
    """The emulator in a subprocess with the flow's entities; yields its connection string."""
    topology = folder / "topology.json"
    subprocess.run(
        [
            *(sys.executable, "-m", "floworch", "topology", "export"),
            *("--flows", str(flows_file), "--out", str(topology)),
        ],
        check=True,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
    )
    with open(folder / "emulator.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "floworch.emulator", "--topology", str(topology), "--json"],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        try:
            yield str(json.loads(line)["connectionString"])
        except (ValueError, KeyError):
            raise RuntimeError(f"the emulator did not start: {line!r}") from None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def databases(folder: Path) -> Iterator[list[tuple[str, str]]]:
    """(label, URL) of SQLite, and of a fresh PostgreSQL schema when the server answers."""
    found = [("SQLite", f"sqlite:///{folder / 'functions.db'}")]
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.schema import CreateSchema, DropSchema

    engine = create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
    schema = f"floworch_bench_fn_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(CreateSchema(schema))
    except Exception as exc:
        engine.dispose()
        print(f"  (PostgreSQL at 127.0.0.1:5432 not reachable: {type(exc).__name__}; SQLite only)")
        yield found
        return
    url = make_url(PG_SERVER_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    found.append(("PostgreSQL", url.render_as_string(hide_password=False)))
    try:
        yield found
    finally:
        with engine.begin() as conn:
            conn.execute(DropSchema(schema, cascade=True))
        engine.dispose()


async def steps_per_second(
    label: str, db_url: str, connection: str, flows: list[Any], steps: int, runs: int
) -> None:
    from floworch.engine.handlers import HandlerRegistry
    from floworch.hosting.functions import FunctionsSettings, build_app
    from floworch.hosting.functions.local import LocalFunctionsHost
    from floworch.runtime.servicebus.config import ServiceBusConnection
    from floworch.storage.factory import open_store

    handlers = HandlerRegistry()

    @handlers.handler("Noop")
    async def noop(inputs: Any) -> None:
        return None

    store = await open_store(db_url)  # migrated here: the deployed app never migrates
    settings = FunctionsSettings(
        flows_path=ROOT / "flows",
        db_url=None,
        connection=ServiceBusConnection(connection_string=connection),
        api_auth="none",
    )
    app = build_app(flows, settings=settings, handlers=handlers, store=store)
    host_json = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    concurrency = host_json["extensions"]["serviceBus"]["maxConcurrentCalls"]
    host = LocalFunctionsHost(
        app, connection_string=connection, max_concurrent_calls=concurrency, timer_every=None
    )
    try:
        await host.start()
        engine_ready = await host.http("GET", "/healthz")
        assert engine_ready.status_code == 200, engine_ready.get_body()

        async def chains(count: int) -> float:
            started = time.perf_counter()
            ids = []
            for _ in range(count):
                answer = await host.http(
                    "POST",
                    f"/api/flows/{FLOW_ID}/runs",
                    body={},
                    headers={"Content-Type": "application/json"},
                )
                assert answer.status_code == 202, answer.get_body()
                ids.append(json.loads(answer.get_body())["runId"])
            engine = app.runtime.engine
            for run_id in ids:
                run = await engine.wait_for_run(run_id, timeout=600)
                assert run.status == "Succeeded", run.to_dict()
            return time.perf_counter() - started

        await chains(1)  # warm-up: connections, receivers, caches
        alone = await chains(1)
        together = await chains(runs)
        print(
            f"  {label:<10} 1 chain:  {steps / alone:7.1f} steps/s "
            f"({alone / steps * 1000:.1f} ms per step)"
        )
        print(
            f"  {label:<10} {runs} chains: {runs * steps / together:7.1f} steps/s "
            f"({runs * steps} steps in {together:.1f} s)"
        )
        print(f"  {'':<10} invocations {host.stats.invocations}, abandoned {host.stats.abandoned}")
    finally:
        await host.stop()
        await app.runtime.close()
        await store.close()


def throughput(steps: int, runs: int, folder: Path) -> None:
    from floworch.model import load_manifest

    flows_file = folder / f"{FLOW_ID}.json"
    flows_file.write_text(json.dumps(chain_manifest(steps)), encoding="utf-8")
    flows = [load_manifest(chain_manifest(steps))]
    print(
        f"\nsteps/s through the function entry points (chain of {steps} no-op steps; local host, "
        "emulator in a subprocess, auto-complete)"
    )
    with emulator(folder, flows_file) as connection, databases(folder) as urls:
        for label, url in urls:
            asyncio.run(steps_per_second(label, url, connection, flows, steps, runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="N: the chain's length")
    parser.add_argument("--runs", type=int, default=8, help="chains started at once")
    parser.add_argument("--repeat", type=int, default=5, help="processes per cold-start figure")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="floworch-bench-fn-") as tmp:
        folder = Path(tmp)
        cold_start(args.repeat, folder / "fifty")
        throughput(args.steps, args.runs, folder)


if __name__ == "__main__":
    main()
