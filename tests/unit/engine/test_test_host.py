"""FlowTestHost returns control while handlers run (issue 9.3)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry
from floworch.testing.host import FlowTestHost

from .support import flow


def blocking() -> tuple[HandlerRegistry, asyncio.Event, list[str]]:
    """A handler that runs until it is cancelled (it would block for an hour otherwise)."""
    reg = HandlerRegistry()
    started = asyncio.Event()
    seen: list[str] = []

    @reg.handler("Long")
    async def long(ctx: StepContext, inputs: Any) -> Any:
        started.set()
        reason = await asyncio.wait_for(ctx.cancellation.wait(), timeout=3600)
        seen.append(str(reason))
        return "never stored"

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    return reg, started, seen


async def test_trigger_returns_while_a_handler_runs_and_the_run_can_be_cancelled() -> None:
    reg, started, seen = blocking()
    async with FlowTestHost([flow({"long": {"type": "Long"}})], reg) as host:
        run_id = await asyncio.wait_for(host.trigger("f"), timeout=30)
        await asyncio.wait_for(started.wait(), timeout=30)
        assert (await host.get(run_id)).steps["long"].status == "Running"
        assert await asyncio.wait_for(host.cancel(run_id), timeout=30) is True
        run = await host.wait(run_id, timeout=30)
    assert run.status == "Cancelled"
    assert run.steps["long"].status == "Cancelled"
    assert seen == ["cancelled by test"]


async def test_a_signal_reaches_a_run_while_another_branch_runs() -> None:
    reg, started, _ = blocking()
    manifest = flow(
        {
            "long": {"type": "Long"},
            "approve": {"type": "WaitForSignal", "inputs": {"signalName": "go"}},
            "after": {"type": "Echo", "inputs": 1, "runAfter": {"approve": ["Succeeded"]}},
        }
    )
    async with FlowTestHost([manifest], reg) as host:
        run_id = await asyncio.wait_for(host.trigger("f"), timeout=30)
        await asyncio.wait_for(started.wait(), timeout=30)
        assert await asyncio.wait_for(host.signal(run_id, "go", {"ok": True}), timeout=30) in (
            "Delivered",
            "Buffered",
        )
        after = await host.wait_step(run_id, "after")
        assert after.status == "Succeeded" and after.output == 1
        assert (await host.get(run_id)).steps["long"].status == "Running"
        await host.cancel(run_id)


HANDLERS = """
import floworch


@floworch.handler("BesideManifest915")
async def beside(inputs):
    return {"hello": inputs["name"]}
"""

MANIFEST = """
id: beside-915
version: "1"
steps:
  greet:
    type: BesideManifest915
    inputs: {name: "@triggerBody()"}
"""


async def test_a_manifest_path_brings_the_handlers_beside_it(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS, encoding="utf-8")
    (tmp_path / "flow.yaml").write_text(MANIFEST, encoding="utf-8")
    for source in (str(tmp_path / "flow.yaml"), tmp_path / "flow.yaml", str(tmp_path)):
        async with FlowTestHost([source]) as host:
            run = await host.wait(await host.trigger("beside-915", body="Ada"))
        assert run.status == "Succeeded"
        assert run.steps["greet"].output == {"hello": "Ada"}
