"""Engine throughput: step transitions per second on the in-memory store (or another store).

Usage::

    python bench/engine.py                      # every shape, in memory
    python bench/engine.py --shapes chain-100,foreach-1000-10
    python bench/engine.py --db sqlite:///bench.db
    python bench/engine.py --profile chain-1000 # cProfile the engine on one shape

A transition is one step instance reaching a terminal status (the ForEach step itself counts
once, plus each body step). Handlers are no-op async functions, so the figures measure the engine,
the store and the in-process dispatcher.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from floworch.engine.consumer import StepConsumer
from floworch.engine.engine import Engine
from floworch.engine.handlers import HandlerRegistry
from floworch.model import load_manifest
from floworch.runtime.memory import InProcessDispatcher
from floworch.storage.memory import MemoryStore
from floworch.storage.port import Store


def chain(n: int) -> dict[str, Any]:
    steps: dict[str, Any] = {"s0": {"type": "Noop"}}
    for i in range(1, n):
        steps[f"s{i}"] = {"type": "Noop", "runAfter": {f"s{i - 1}": ["Succeeded"]}}
    return steps


def fan(n: int) -> dict[str, Any]:
    steps: dict[str, Any] = {"start": {"type": "Noop"}}
    for i in range(n):
        steps[f"b{i}"] = {"type": "Noop", "runAfter": {"start": ["Succeeded"]}}
    steps["join"] = {"type": "Noop", "runAfter": {f"b{i}": ["Succeeded"] for i in range(n)}}
    return steps


def for_each(n: int, limit: int, *, item_bytes: int = 0) -> dict[str, Any]:
    """A ForEach over ``n`` items (integers, or objects padded to about ``item_bytes``)."""
    items: list[Any] = list(range(n))
    if item_bytes:
        items = [{"id": i, "pad": "x" * item_bytes} for i in range(n)]
    return {
        "each": {
            "type": "ForEach",
            "forEach": items,
            "concurrencyLimit": limit,
            "steps": {"body": {"type": "Noop", "inputs": "@item()"}},
        }
    }


SHAPES: dict[str, Callable[[], dict[str, Any]]] = {
    "chain-100": lambda: chain(100),
    "chain-1000": lambda: chain(1000),
    "fan-100": lambda: fan(100),
    "fan-1000": lambda: fan(1000),
    "foreach-1000-1000": lambda: for_each(1000, 1000),
    "foreach-100-10": lambda: for_each(100, 10),
    "foreach-1000-10": lambda: for_each(1000, 10),
    # Per-step cost must not grow with the item count (the items are not in the ForEach row).
    "foreach-obj-100-10": lambda: for_each(100, 10, item_bytes=200),
    "foreach-obj-1000-10": lambda: for_each(1000, 10, item_bytes=200),
}


async def _noop(inputs: Any) -> Any:
    return None


async def measure(
    shape: str, open_store: Callable[[], Any], concurrency: int
) -> tuple[int, float, float]:
    """Runs one flow of ``shape`` to the end; returns (transitions, wall seconds, CPU seconds)."""
    handlers = HandlerRegistry()
    handlers.register("Noop", _noop)
    manifest = load_manifest({"id": shape, "version": "1", "steps": SHAPES[shape]()})
    store: Store = await open_store()
    dispatcher = InProcessDispatcher(concurrency=concurrency)
    engine = Engine(store=store, dispatcher=dispatcher, flows=[manifest], handlers=handlers)
    await engine.sync_flows()
    dispatcher.start(StepConsumer(engine).handle)
    try:
        began, cpu = time.perf_counter(), time.process_time()
        result = await engine.trigger(shape)
        assert result.run_id is not None
        run = await engine.wait_for_run(result.run_id, timeout=600, poll_interval=0.005)
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
    finally:
        await dispatcher.stop()
        await store.close()
    if run.status != "Succeeded":
        raise SystemExit(f"{shape}: run ended {run.status}")
    return len(run.steps), elapsed, cpu


def store_opener(url: str | None) -> Callable[[], Any]:
    if url is None:

        async def memory() -> Store:
            return MemoryStore()

        return memory
    try:
        from floworch.storage.factory import open_store
    except ImportError as exc:  # pragma: no cover - the SQL store is optional
        raise SystemExit(f"--db needs floworch.storage.factory: {exc}") from exc

    async def sql() -> Store:
        return await open_store(url)

    return sql


async def main_async(args: argparse.Namespace) -> None:
    shapes = args.shapes.split(",") if args.shapes else list(SHAPES)
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    opener = store_opener(args.db)
    print(f"store: {args.db or 'memory'}  concurrency: {args.concurrency}")
    print(
        f"{'shape':<20}{'steps':>7}{'seconds':>10}{'transitions/s':>15}{'us/step':>10}"
        f"{'per CPU-s':>12}"
    )
    per_step: dict[str, float] = {}
    for shape in shapes:
        await measure(shape, opener, args.concurrency) if args.warmup else None
        count, seconds, cpu = await measure(shape, opener, args.concurrency)
        per_step[shape] = cpu / count * 1e6
        print(
            f"{shape:<20}{count:>7}{seconds:>10.3f}{count / seconds:>15,.0f}"
            f"{seconds / count * 1e6:>10.1f}{count / cpu:>12,.0f}"
        )
    for small, large in (("chain-100", "chain-1000"), ("fan-100", "fan-1000")):
        if small in per_step and large in per_step:
            ratio = per_step[large] / per_step[small]
            print(f"per-step CPU cost {large} / {small}: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="store URL (default: in memory)")
    parser.add_argument("--shapes", help=f"comma-separated, from: {', '.join(SHAPES)}")
    parser.add_argument("--concurrency", type=int, default=64, help="in-process workers")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--profile", metavar="SHAPE", help="cProfile one shape and print the top")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(measure(args.profile, store_opener(args.db), args.concurrency))
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(35)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
