"""ForEach: ordering, real concurrency bounds, bodies, empty and bad lists, failures, signals."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from floworch.engine.context import StepContext
from floworch.engine.expression_context import NO_ITEM, loop_item
from floworch.engine.handlers import HandlerRegistry
from floworch.model.statuses import StepStatus
from floworch.storage.records import StepRecord
from floworch.testing.host import FlowTestHost

from .support import flow


def loop(
    body: dict[str, Any], items: Any, limit: int | None = None, **extra: Any
) -> dict[str, Any]:
    step: dict[str, Any] = {"type": "ForEach", "forEach": items, "steps": body, **extra}
    if limit is not None:
        step["concurrencyLimit"] = limit
    return step


async def test_limit_one_runs_iterations_strictly_in_sequence() -> None:
    reg = HandlerRegistry()
    log: list[str] = []

    @reg.handler("First")
    async def first(ctx: StepContext, inputs: Any) -> Any:
        log.append(f"start {ctx.index}")
        await asyncio.sleep(0.005)
        return inputs

    @reg.handler("Second")
    async def second(ctx: StepContext, inputs: Any) -> Any:
        await asyncio.sleep(0.005)
        log.append(f"end {ctx.index}")
        return inputs * 10

    body = {
        "a": {"type": "First", "inputs": "@item()"},
        "b": {"type": "Second", "inputs": "@steps('a').output", "runAfter": {"a": ["Succeeded"]}},
    }
    manifest = flow({"each": loop(body, [1, 2, 3, 4], limit=1)})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.status == "Succeeded"
    assert log == ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]
    assert run.steps["each"].output == [10, 20, 30, 40]


async def test_limit_two_never_has_more_than_two_in_flight() -> None:
    reg = HandlerRegistry()
    in_flight = 0
    peak = 0

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return inputs

    manifest = flow({"each": loop({"w": {"type": "Work", "inputs": "@item()"}}, list(range(8)), 2)})
    async with FlowTestHost([manifest], reg, concurrency=8) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.status == "Succeeded"
    assert peak == 2
    assert run.steps["each"].output == list(range(8))


async def test_multi_step_body_output_is_keyed_by_leaf() -> None:
    reg = HandlerRegistry()

    @reg.handler("Double")
    async def double(inputs: Any) -> Any:
        return inputs * 2

    body = {
        "d": {"type": "Double", "inputs": "@item()"},
        "x": {"type": "Double", "inputs": "@steps('d').output", "runAfter": {"d": ["Succeeded"]}},
        "y": {"type": "Double", "inputs": "@index()", "runAfter": {"d": ["Succeeded"]}},
    }
    manifest = flow({"each": loop(body, [1, 5])})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.status == "Succeeded"
    assert run.steps["each"].output == [{"x": 4, "y": 0}, {"x": 20, "y": 2}]
    assert run.steps["each.1.x"].output == 20


async def test_empty_list_succeeds_with_empty_output() -> None:
    reg = HandlerRegistry()

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        raise AssertionError("never called")

    manifest = flow(
        {
            "each": loop({"w": {"type": "Work"}}, "@triggerBody()?.items"),
            "after": {"type": "Work2", "runAfter": {"each": ["Succeeded"]}},
        }
    )

    @reg.handler("Work2")
    async def work2(inputs: Any) -> Any:
        return "after"

    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f", body={"items": []}))
    assert run.status == "Succeeded"
    assert run.steps["each"].status == "Succeeded"
    assert run.steps["each"].output == []
    assert run.steps["after"].output == "after"


async def test_non_list_items_fail_clearly() -> None:
    reg = HandlerRegistry()

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        return inputs

    manifest = flow({"each": loop({"w": {"type": "Work"}}, "@triggerBody()")})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f", body={"not": "a list"}))
    assert run.status == "Failed"
    error = run.steps["each"].error
    assert error["type"] == "ForEachItemsError"
    assert "must resolve to a list, got dict" in error["message"]


async def test_iteration_failure_fails_the_foreach_with_per_item_errors() -> None:
    reg = HandlerRegistry()

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        if inputs % 2:
            raise ValueError(f"odd {inputs}")
        return inputs

    manifest = flow({"each": loop({"w": {"type": "Work", "inputs": "@item()"}}, [0, 1, 2, 3])})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.status == "Failed"
    each = run.steps["each"]
    assert each.status == "Failed"
    assert each.error["type"] == "ForEachFailed"
    assert each.error["message"] == "2 of 4 iterations failed"
    items = each.error["items"]
    assert [i["index"] for i in items] == [1, 3]
    assert items[0]["errors"]["w"]["message"] == "odd 1"
    assert run.steps["each.2.w"].status == "Succeeded"


async def test_wait_for_signal_in_body_is_a_barrier() -> None:
    reg = HandlerRegistry()

    @reg.handler("After")
    async def after(inputs: Any) -> Any:
        return inputs

    body = {"wait": {"type": "WaitForSignal", "inputs": {"signalName": "go-@{index()}"}}}
    manifest = flow(
        {
            "each": loop(body, ["a", "b", "c"], limit=3),
            "after": {
                "type": "After",
                "inputs": "@steps('each').output",
                "runAfter": {"each": ["Succeeded"]},
            },
        }
    )
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        await host.idle()
        assert await host.signal(run_id, "go-0", {"n": 0}) == "Delivered"
        assert await host.signal(run_id, "go-2", {"n": 2}) == "Delivered"
        state = await host.get(run_id)
        assert state.steps["each"].status == "Waiting"
        assert "after" not in state.steps
        assert await host.signal(run_id, "go-1", {"n": 1}) == "Delivered"
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert run.steps["after"].output == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_nested_foreach() -> None:
    reg = HandlerRegistry()

    @reg.handler("Mul")
    async def mul(inputs: Any) -> Any:
        return inputs["a"] * inputs["b"]

    inner = loop(
        {"m": {"type": "Mul", "inputs": {"a": "@item()", "b": "@steps('scale').output"}}},
        "@item()",
        limit=2,
    )
    outer_body = {
        "scale": {"type": "Mul", "inputs": {"a": "@index()", "b": 10}},
        "inner": {**inner, "runAfter": {"scale": ["Succeeded"]}},
    }
    manifest = flow({"outer": loop(outer_body, [[1, 2], [3, 4, 5]], limit=1)})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.status == "Succeeded", run.to_dict()
    assert run.steps["outer"].output == [[0, 0], [30, 40, 50]]


async def test_the_foreach_row_keeps_counters_and_each_item_has_a_row_of_its_own() -> None:
    reg = HandlerRegistry()
    seen: list[Any] = []

    @reg.handler("Work")
    async def work(ctx: StepContext, inputs: Any) -> Any:
        seen.append(ctx.item)
        return inputs["id"]

    items = [{"id": i, "pad": "x" * 100} for i in range(40)]
    manifest = flow({"each": loop({"w": {"type": "Work", "inputs": "@item()"}}, items, 4)})
    async with FlowTestHost([manifest], reg, concurrency=8) as host:
        run = await host.wait(await host.trigger("f"))
        assert run.status == "Succeeded"
        assert run.steps["each"].output == list(range(40))
        assert sorted(seen, key=lambda item: item["id"]) == items
        rows = {s.step_key: s for s in await host.store.get_steps(run.run_id)}
        state = rows["each"].state
        # Counters only: what is rewritten as iterations end does not grow with the items.
        assert set(state) == {"total", "next", "done", "active"} and state["total"] == 40
        stored = await host.store.get_loop_item(run.run_id, "each", 39)
        assert stored is not None and stored.value == items[39]


def test_a_loop_started_before_items_had_rows_reads_them_from_its_state() -> None:
    # Runs in flight across the upgrade to migration 0006 keep their items in the ForEach state.
    old = StepRecord(
        "r", "each", "ForEach", StepStatus.WAITING, state={"items": ["a", "b"], "total": 2}
    )
    assert loop_item({"each": old}, "each.1.w") == ("b", 1)
    new = replace(old, state={"total": 2})
    assert loop_item({"each": new}, "each.1.w") == (NO_ITEM, 1)
    assert loop_item({}, "top") == (NO_ITEM, None)
