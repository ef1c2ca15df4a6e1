"""The traced flow of the telemetry tests (5 steps: a ForEach and a retried step) and the checks
that one run arrived as one trace, whichever exporter carried it."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

from tests.acceptance.worker_support import write_flow

TRACED = "traced"
ITEMS = 6
SB_KEY = "S3cretSharedAccessKeyValue0123456789abcdef="
DB_PASSWORD = "s3cret-db-pass"

# `flaky` fails its first attempt (retried after 0.2 s); every handler logs through ctx.logger,
# and `start` also logs the connection strings it can see (they must be masked in export).
HANDLERS = textwrap.dedent("""
    import asyncio
    import os

    import floworch


    @floworch.handler("Start")
    async def start(ctx, inputs):
        ctx.logger.info("starting with %s", os.environ.get("FLOWORCH_SERVICEBUS_CONNECTION"))
        ctx.logger.info("database %s", os.environ.get("TRACED_DB_URL"))
        return {"items": list(range(ITEMS_COUNT))}


    @floworch.handler("Charge")
    async def charge(ctx, inputs):
        await asyncio.sleep(0.2)
        ctx.logger.info("charged item %s", ctx.item)
        return {"item": ctx.item, "pid": os.getpid()}


    @floworch.handler("Flaky")
    async def flaky(ctx, inputs):
        ctx.logger.info("flaky attempt %s", ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("transient failure")
        return {"attempt": ctx.attempt}


    @floworch.handler("Done")
    async def done(ctx, inputs):
        ctx.logger.info("done")
        return {"ok": True}
""").replace("ITEMS_COUNT", str(ITEMS))

STEPS: dict[str, Any] = {
    "start": {"type": "Start"},
    "each": {
        "type": "ForEach",
        "forEach": "@steps('start').output.items",
        "runAfter": {"start": ["Succeeded"]},
        "steps": {"charge": {"type": "Charge"}},
    },
    "flaky": {
        "type": "Flaky",
        "runAfter": {"each": ["Succeeded"]},
        "retry": {"maxAttempts": 3, "initialIntervalSeconds": 0.2},
    },
    "done": {"type": "Done", "runAfter": {"flaky": ["Succeeded"]}},
}
STEP_SPANS = 1 + 1 + ITEMS + 2 + 1
"""flow.step spans of one run: start, the ForEach, each charge, flaky twice, done."""


def traced_flow(directory: Path) -> Path:
    return write_flow(directory, TRACED, STEPS, HANDLERS)


def check_one_trace(spans: list[dict[str, Any]], *, run_id: str) -> str:
    """Checks spans (as ``name``, ``kind``, ``trace_id``, ``span_id``, ``parent``,
    ``attributes``, ``instance``) of one run; returns the trace id."""
    mine = [s for s in spans if s["attributes"].get("floworch.run_id") == run_id]
    traces: set[str] = {s["trace_id"] for s in mine}
    assert len(traces) == 1, f"run {run_id} spans in {len(traces)} traces: {traces}"
    names = Counter(s["name"] for s in mine)
    assert names["flow.trigger"] == 1, names
    steps = [s for s in mine if s["name"] == "flow.step"]
    dispatches = {s["span_id"]: s for s in mine if s["name"] == "flow.dispatch"}
    assert len(steps) == STEP_SPANS, names
    for step in steps:
        assert step["kind"] == "CONSUMER", step
        parent = dispatches.get(step["parent"])
        assert parent is not None, f"flow.step {step['attributes']} has no flow.dispatch parent"
        assert parent["kind"] == "PRODUCER"
        for name in ("floworch.step_key", "floworch.seq"):
            assert str(parent["attributes"][name]) == str(step["attributes"][name]), (parent, step)
    flaky = sorted(
        (s for s in steps if s["attributes"]["floworch.step_key"] == "flaky"),
        key=lambda s: int(s["attributes"]["floworch.attempt"]),
    )
    assert [str(s["attributes"]["floworch.status"]) for s in flaky] == ["Failed", "Succeeded"]
    # Across processes: some step ran in another worker than the one that dispatched it.
    crossed = [s for s in steps if dispatches[s["parent"]]["instance"] != s["instance"]]
    assert crossed, "every step ran in the process that dispatched it"
    assert len({s["instance"] for s in steps}) == 2, "the steps did not run in both workers"
    return traces.pop()
