"""DAG semantics: AND-joins, handled and unhandled failures, When clauses and skip cascades."""

from __future__ import annotations

import asyncio
from typing import Any

from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry
from floworch.testing.host import FlowTestHost

from .support import flow


def registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    @reg.handler("Boom")
    async def boom(inputs: Any) -> Any:
        raise ValueError("kaboom")

    return reg


async def test_diamond_join_waits_for_both_branches() -> None:
    reg = registry()
    slow_may_finish = asyncio.Event()
    order: list[str] = []

    @reg.handler("Slow")
    async def slow(ctx: StepContext, inputs: Any) -> Any:
        await slow_may_finish.wait()
        order.append(ctx.step_key)
        return "slow"

    @reg.handler("Record")
    async def record(ctx: StepContext, inputs: Any) -> Any:
        order.append(ctx.step_key)
        return inputs

    manifest = flow(
        {
            "a": {"type": "Record"},
            "b": {"type": "Slow", "runAfter": {"a": ["Succeeded"]}},
            "c": {"type": "Record", "runAfter": {"a": ["Succeeded"]}},
            "d": {
                "type": "Record",
                "inputs": {"b": "@steps('b').output", "c": "@steps('c').status"},
                "runAfter": {"b": ["Succeeded"], "c": ["Succeeded"]},
            },
        }
    )
    async with FlowTestHost([manifest], reg) as host:
        run_id = (await host.engine.trigger("f")).run_id
        assert run_id is not None
        for _ in range(50):
            state = await host.get(run_id)
            if "c" in state.steps and state.steps["c"].status == "Succeeded":
                break
            await asyncio.sleep(0.01)
        state = await host.get(run_id)
        assert state.steps["c"].status == "Succeeded"
        assert "d" not in state.steps  # the join still waits for b
        slow_may_finish.set()
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert order.index("d") > order.index("b")
    assert run.steps["d"].output == {"b": "slow", "c": "Succeeded"}


async def test_failure_branch_handles_the_failure() -> None:
    manifest = flow(
        {
            "work": {"type": "Boom"},
            "fallback": {"type": "Echo", "inputs": "ok", "runAfter": {"work": ["Failed"]}},
        }
    )
    async with FlowTestHost([manifest], registry()) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.steps["work"].status == "Failed"
    assert run.steps["fallback"].status == "Succeeded"
    assert run.status == "Succeeded"


async def test_unhandled_failure_fails_the_run_and_stores_the_error() -> None:
    manifest = flow(
        {
            "work": {"type": "Boom"},
            "next": {"type": "Echo", "runAfter": {"work": ["Succeeded"]}},
        }
    )
    async with FlowTestHost([manifest], registry()) as host:
        run_id = await host.trigger("f")
        run = await host.wait(run_id)
        events = [e.kind for e in await host.store.list_events(run_id)]
    assert run.status == "Failed"
    error = run.steps["work"].error
    assert error["type"] == "ValueError"
    assert error["message"] == "kaboom"
    assert "Traceback" in error["traceback"] and "kaboom" in error["traceback"]
    assert run.steps["work"].attempts == 1
    assert run.steps["next"].status == "Skipped"
    assert events[0] == "RunStarted" and events[-1] == "RunFailed"
    assert "StepFailed" in events


async def test_when_clause_false_skips_with_trace() -> None:
    manifest = flow(
        {
            "check": {"type": "Echo", "inputs": {"approved": False}},
            "ship": {
                "type": "Echo",
                "runAfter": {
                    "check": {
                        "statuses": ["Succeeded"],
                        "when": "@steps('check').output.approved == true",
                    }
                },
            },
        }
    )
    async with FlowTestHost([manifest], registry()) as host:
        run = await host.wait(await host.trigger("f"))
    ship = run.steps["ship"]
    assert ship.status == "Skipped"
    assert ship.attempts == 0
    assert ship.skip_reason is not None and "when clause" in ship.skip_reason
    (trace,) = ship.when_trace
    assert trace["expression"] == "@steps('check').output.approved == true"
    assert trace["resolved"] == "false == true"
    assert trace["result"] is False
    assert run.status == "Skipped"


async def test_when_clause_type_mismatch_skips_with_error_in_trace() -> None:
    manifest = flow(
        {
            "check": {"type": "Echo", "inputs": {"count": "three"}},
            "ship": {
                "type": "Echo",
                "runAfter": {"check": {"when": "@steps('check').output.count > 2"}},
            },
        }
    )
    async with FlowTestHost([manifest], registry()) as host:
        run = await host.wait(await host.trigger("f"))
    ship = run.steps["ship"]
    assert ship.status == "Skipped"
    (trace,) = ship.when_trace
    assert trace["result"] is False
    assert trace["error"]
    assert ship.skip_reason is not None and "failed" in ship.skip_reason


async def test_skip_cascades_but_a_successor_listing_skipped_runs() -> None:
    manifest = flow(
        {
            "work": {"type": "Echo", "inputs": 1},
            "onFail": {"type": "Echo", "runAfter": {"work": ["Failed"]}},
            "afterFail": {"type": "Echo", "runAfter": {"onFail": ["Succeeded"]}},
            "cleanup": {"type": "Echo", "inputs": "clean", "runAfter": {"onFail": ["Skipped"]}},
        }
    )
    async with FlowTestHost([manifest], registry()) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.steps["onFail"].status == "Skipped"
    assert run.steps["afterFail"].status == "Skipped"
    assert "'onFail' is Skipped" in (run.steps["afterFail"].skip_reason or "")
    assert run.steps["cleanup"].status == "Succeeded"
    assert run.steps["cleanup"].output == "clean"
    assert run.status == "Succeeded"


async def test_run_is_skipped_when_every_leaf_was_skipped() -> None:
    manifest = flow(
        {
            "work": {"type": "Echo"},
            "onFail": {"type": "Echo", "runAfter": {"work": ["Failed"]}},
        }
    )
    async with FlowTestHost([manifest], registry()) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.steps["work"].status == "Succeeded"
    assert run.steps["onFail"].status == "Skipped"
    assert run.status == "Skipped"


async def test_wide_join_waits_for_every_branch_and_skips_on_one_failure() -> None:
    reg = registry()
    branches = {f"b{i}": {"type": "Boom" if i == 3 else "Echo", "inputs": i} for i in range(12)}
    manifest = flow(
        {
            **branches,
            "join": {"type": "Echo", "runAfter": {k: ["Succeeded"] for k in branches}},
            "all": {"type": "Echo", "inputs": "all", "runAfter": {k: [] for k in branches}},
        }
    )
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.steps["join"].status == "Skipped"
    assert "'b3' is Failed" in (run.steps["join"].skip_reason or "")
    assert run.steps["all"].status == "Succeeded"
    assert run.status == "Succeeded"  # "all" ran after the failure, so it handled it
