"""Dashboard render times in a real browser (headless Debian chromium through Playwright).

Fills a SQLite database with 10,000 runs (``--runs``), starts ``floworch serve`` on it with a
flow of 200 steps (``--steps``; 20 layers of 10, each step after two of the layer before), runs
that flow once to the end, then measures (``--repeats`` times, fresh page each time):

- the run list: navigation to ``#/runs`` until its first page of rows is drawn;
- the run detail of the 200-step run: navigation until every step of the graph is coloured;
- the longest main-thread task while each page loads (a page "freezes" for that long).

Usage: python bench/dashboard.py [--runs 10000] [--steps 200] [--repeats 5]
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from floworch.model.statuses import RunStatus
from floworch.storage.factory import open_store
from floworch.storage.records import RunRecord

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HANDLERS = """
import floworch

@floworch.handler("Work")
async def work(inputs):
    return {"ok": True}
"""
LONG_TASKS = """
window.__longest = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
}).observe({type: 'longtask', buffered: true});
"""


def big_flow(steps: int, width: int = 10) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for i in range(steps):
        layer, col = divmod(i, width)
        preds = (
            [] if layer == 0 else [f"s{(layer - 1) * width + (col + d) % width}" for d in (0, 1)]
        )
        found[f"s{i}"] = {
            "type": "Work",
            "inputs": {"n": i},
            "runAfter": {p: ["Succeeded"] for p in preds},
        }
    return {"id": "big", "version": "1", "steps": found}


async def fill(url: str, count: int) -> None:
    store = await open_store(url)
    now = datetime.now(UTC)
    statuses = [RunStatus.SUCCEEDED] * 7 + [
        RunStatus.FAILED,
        RunStatus.RUNNING,
        RunStatus.CANCELLED,
    ]
    try:
        for start in range(0, count, 1000):
            async with store.transaction() as tx:
                for i in range(start, min(count, start + 1000)):
                    created = now - timedelta(minutes=i)
                    status = statuses[i % len(statuses)]
                    await tx.insert_run(
                        RunRecord(
                            run_id=uuid.uuid4().hex,
                            flow_id="big",
                            flow_version="1",
                            trigger_key="manual",
                            status=status,
                            trigger_body={"i": i},
                            trigger_headers={},
                            created_at=created,
                            completed_at=None
                            if status == RunStatus.RUNNING
                            else created + timedelta(seconds=3),
                            remaining=0,
                            idempotency_key=f"order-{i}",
                        )
                    )
    finally:
        await store.close()


def call(base: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{base}/api/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def measure(base: str, run_id: str, steps: int, repeats: int) -> None:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {"list": [], "list-longest": [], "run": [], "run-longest": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(repeats):
            for name, route, ready in (
                ("list", "#/runs", "table.grid tbody tr >> nth=49"),
                ("run", f"#/runs/{run_id}", None),
            ):
                context = browser.new_context(viewport={"width": 1366, "height": 860})
                page = context.new_page()
                page.add_init_script(LONG_TASKS)
                started = time.perf_counter()
                page.goto(f"{base}/{route}")
                if ready:
                    page.locator(ready).wait_for(timeout=120_000)
                else:
                    page.wait_for_function(
                        "(n) => document.querySelectorAll("
                        "'svg.dag [data-status=Succeeded]').length >= n",
                        arg=steps,
                        timeout=120_000,
                        polling=50,
                    )
                results[name].append((time.perf_counter() - started) * 1000)
                results[f"{name}-longest"].append(float(page.evaluate("window.__longest")))
                context.close()
        browser.close()
    for name, label in (
        ("list", "run list (first page of 50)"),
        ("run", f"run detail ({steps} steps)"),
    ):
        times = results[name]
        longest = results[f"{name}-longest"]
        print(
            f"{label}: time to first render median {statistics.median(times):.0f} ms "
            f"(min {min(times):.0f}, max {max(times):.0f}, n={len(times)}); "
            f"longest main-thread task median {statistics.median(longest):.0f} ms, "
            f"max {max(longest):.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "flows").mkdir()
        (root / "flows" / "big.json").write_text(json.dumps(big_flow(args.steps)))
        (root / "flows" / "handlers.py").write_text(HANDLERS)
        url = f"sqlite:///{root / 'bench.db'}"
        started = time.perf_counter()
        asyncio.run(fill(url, args.runs))
        print(f"filled {args.runs} runs in {time.perf_counter() - started:.1f} s")
        out = (root / "serve.out").open("w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "floworch",
                "serve",
                "flows",
                "--port",
                "0",
                "--db",
                url,
                "--log-level",
                "WARNING",
            ],
            cwd=root,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = ""
            while not base:
                match = re.search(r"http://127\.0\.0\.1:\d+", (root / "serve.out").read_text())
                base = match.group(0) if match else ""
                if proc.poll() is not None:
                    raise SystemExit("floworch serve exited")
                time.sleep(0.1)
            started = time.perf_counter()
            run_id = call(base, "POST", "flows/big/runs", {})["runId"]
            while call(base, "GET", f"runs/{run_id}")["status"] == "Running":
                time.sleep(0.5)
            print(f"ran the {args.steps}-step flow in {time.perf_counter() - started:.1f} s")
            measure(base, run_id, args.steps, args.repeats)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            out.close()


if __name__ == "__main__":
    main()
