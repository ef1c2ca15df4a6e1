"""HTTP API figures: trigger latency under concurrency, and the run list over many runs.

Usage::

    python bench/api.py trigger --db sqlite:///bench-api.db --clients 50 --requests 2000
    python bench/api.py trigger --db postgresql://postgres@127.0.0.1:5432/test
    python bench/api.py list --db postgresql://postgres@127.0.0.1:5432/test --runs 100000

``trigger``: 50 concurrent clients POST ``/api/flows/bench/runs`` to a real uvicorn server on
127.0.0.1 (in this process); each 202 means the run row was committed. Step messages go to a
dispatcher that drops them, so the figure is the API + engine.trigger + the store's commit.
``list``: inserts N runs (once; reused), then times ``GET /api/runs`` pages (first page, a
flow filter, a status filter, the second page by cursor, a text search) and prints p50/p95.
PostgreSQL runs use a schema of their own (``bench_api``), dropped by ``--fresh``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from floworch.api import AuthConfig, create_app
from floworch.engine.engine import Engine
from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.http import HttpServer
from floworch.model import load_manifest
from floworch.storage.api_records import RunSearch
from floworch.storage.factory import open_store
from floworch.storage.sql.schema import runs
from floworch.storage.sql.store import SqlStore

FLOW = {
    "id": "bench",
    "version": "1",
    "triggers": {"manual": {"type": "Manual"}},
    "steps": {"a": {"type": "Noop"}},
}


class DropDispatcher:
    """Accepts step messages and drops them (the bench measures triggering only)."""

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        return None

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        return None


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _pg_schema_url(url: str, schema: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


async def _ensure_schema(url: str, schema: str, fresh: bool) -> None:
    if make_url(url).get_backend_name() != "postgresql":
        return
    store = SqlStore.from_url(make_url(url).set(drivername="postgresql+psycopg"))
    with store.engine.begin() as conn:
        if fresh:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    await store.close()


async def _engine(url: str) -> Engine:
    registry = HandlerRegistry()

    @registry.handler("Noop")
    async def noop(inputs: Any) -> None:
        return None

    store = await open_store(url)
    engine = Engine(
        store=store, dispatcher=DropDispatcher(), flows=[load_manifest(FLOW)], handlers=registry
    )
    await engine.sync_flows()
    return engine


async def bench_trigger(url: str, clients: int, requests: int) -> None:
    engine = await _engine(url)
    server = HttpServer(create_app(engine, auth=AuthConfig.none()), port=0)
    await server.start()
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                response = await client.post("/api/flows/bench/runs", json={"n": 1})
                latencies.append(time.perf_counter() - start)
                assert response.status_code == 202, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    await server.stop()
    committed = (await engine.store.search_runs(RunSearch(flow_id="bench", limit=1))).total  # type: ignore[attr-defined]
    await engine.store.close()
    backend = make_url(url).get_backend_name()
    print(
        f"trigger over HTTP ({backend}, {clients} clients, {requests} requests, {committed} run "
        f"rows in the store): p50 {_pct(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {_pct(latencies, 0.99) * 1000:.1f} ms, {requests / elapsed:.0f} runs/s"
    )


async def _fill(store: SqlStore, count: int) -> None:
    have = (await store.search_runs(RunSearch(limit=1))).total
    if have >= count:
        return
    start = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = ["Succeeded"] * 8 + ["Failed", "Running"]
    batch: list[dict[str, Any]] = []
    for i in range(have, count):
        batch.append(
            {
                "run_id": uuid.uuid4().hex,
                "flow_id": f"flow-{i % 20}",
                "flow_version": "1",
                "trigger_key": "manual",
                "status": statuses[i % len(statuses)],
                "trigger_body": {"payload": "x" * 500, "i": i},
                "trigger_headers": {},
                "created_at": start + timedelta(seconds=i),
                "remaining": 0,
                "idempotency_key": f"order-{i}",
                "trace_context": {},
                "lock_version": 0,
            }
        )
        if len(batch) == 5000:
            with store.engine.begin() as conn:
                conn.execute(insert(runs), batch)
            batch = []
    if batch:
        with store.engine.begin() as conn:
            conn.execute(insert(runs), batch)
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE runs"))


async def bench_list(url: str, count: int, repeats: int) -> None:
    engine = await _engine(url)
    store = engine.store
    assert isinstance(store, SqlStore)
    await _fill(store, count)
    server = HttpServer(create_app(engine, auth=AuthConfig.none()), port=0)
    await server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        first = (await client.get("/api/runs", params={"limit": 50})).json()
        cursor = first["nextCursor"]
        cases = {
            "first page": {"limit": 50},
            "flow filter": {"limit": 50, "flowId": "flow-7"},
            "status filter": {"limit": 50, "status": "Failed"},
            "second page (cursor)": {"limit": 50, "cursor": cursor},
            "flow + status": {"limit": 50, "flowId": "flow-3", "status": "Running"},
            "text search (prefix)": {"limit": 50, "q": "order-4242"},
        }
        for name, params in cases.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                response = await client.get("/api/runs", params=params)
                times.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
            total = response.json()["total"]
            print(
                f"GET /api/runs {name:<22} over {count} runs (total {total}): "
                f"p50 {statistics.median(times) * 1000:.1f} ms, "
                f"p95 {_pct(times, 0.95) * 1000:.1f} ms"
            )
    await server.stop()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["trigger", "list"])
    parser.add_argument("--db", default="sqlite:///bench-api.db")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--fresh", action="store_true", help="Drop the bench schema first.")
    args = parser.parse_args()
    schema = "bench_api_trigger" if args.what == "trigger" else "bench_api_list"
    asyncio.run(_ensure_schema(args.db, schema, args.fresh or args.what == "trigger"))
    url = _pg_schema_url(args.db, schema)
    if args.what == "trigger":
        asyncio.run(bench_trigger(url, args.clients, args.requests))
    else:
        asyncio.run(bench_list(url, args.runs, args.repeats))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
