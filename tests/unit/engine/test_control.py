"""Run control: idempotent triggers, manual retry, rerun, disabled flows and cron schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry
from floworch.storage.records import RunQuery
from floworch.testing.host import FlowTestHost

from .support import START, flow


async def test_same_idempotency_key_returns_the_first_run() -> None:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    async with FlowTestHost([flow({"a": {"type": "Echo"}})], reg) as host:
        first = await host.engine.trigger("f", body=1, idempotency_key="k1")
        second = await host.engine.trigger("f", body=2, idempotency_key="k1")
        other = await host.engine.trigger("f", body=3, idempotency_key="k2")
        await host.idle()
        runs = await host.store.list_runs(RunQuery(flow_id="f"))
    assert first.run_id is not None and not first.duplicate
    assert second.run_id == first.run_id and second.duplicate
    assert other.run_id != first.run_id
    assert len(runs) == 2


async def test_manual_retry_replans_skipped_steps_and_the_run_succeeds() -> None:
    reg = HandlerRegistry()
    healthy = False

    @reg.handler("Flaky")
    async def flaky(ctx: StepContext, inputs: Any) -> Any:
        if not healthy:
            raise ConnectionError("down")
        return "ok"

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    manifest = flow(
        {
            "a": {"type": "Flaky"},
            "b": {"type": "Echo", "inputs": "@steps('a').output", "runAfter": {"a": ["Succeeded"]}},
            "c": {"type": "Echo", "inputs": "c", "runAfter": {"b": ["Succeeded"]}},
        }
    )
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        failed = await host.wait(run_id)
        assert failed.status == "Failed"
        assert failed.steps["c"].status == "Skipped"
        healthy = True
        await host.retry_step(run_id, "a")
        run = await host.wait(run_id)
        attempts = await host.store.get_attempts(run_id, "a")
    assert run.status == "Succeeded"
    assert run.steps["a"].attempts == 2
    assert run.steps["a"].error is None
    assert run.steps["b"].output == "ok"
    assert run.steps["c"].status == "Succeeded"
    assert [(a.attempt, a.status) for a in attempts] == [(1, "Failed"), (2, "Succeeded")]


async def test_retry_of_a_succeeded_step_is_refused() -> None:
    from floworch.errors import InvalidOperationError

    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    async with FlowTestHost([flow({"a": {"type": "Echo"}})], reg) as host:
        run_id = await host.trigger("f")
        await host.wait(run_id)
        with pytest.raises(InvalidOperationError, match="only Failed, TimedOut or Cancelled"):
            await host.retry_step(run_id, "a")


async def test_rerun_starts_a_new_run_with_lineage_and_the_same_trigger() -> None:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(ctx: StepContext, inputs: Any) -> Any:
        return {"body": ctx.trigger_body, "header": ctx.trigger_headers.get("X-Id")}

    async with FlowTestHost([flow({"a": {"type": "Echo"}})], reg) as host:
        first = await host.trigger("f", body={"x": 1}, headers={"X-Id": "7"})
        await host.wait(first)
        second = await host.rerun(first)
        run = await host.wait(second)
    assert second != first
    assert run.source_run_id == first
    assert run.status == "Succeeded"
    assert run.steps["a"].output == {"body": {"x": 1}, "header": "7"}


async def test_disabled_flow_starts_no_run() -> None:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    async with FlowTestHost([flow({"a": {"type": "Echo"}})], reg) as host:
        await host.engine.set_flow_enabled("f", False)
        result = await host.engine.trigger("f")
        assert result.disabled and result.run_id is None
        with pytest.raises(RuntimeError, match="disabled"):
            await host.trigger("f")
        await host.engine.set_flow_enabled("f", True)
        assert (await host.engine.trigger("f")).run_id is not None


def cron_flow(cron: str) -> dict[str, Any]:
    return flow(
        {"a": {"type": "Echo", "inputs": "@triggerHeaders()['X-Floworch-Fire-Time']"}},
        triggers={"tick": {"type": "Cron", "cron": cron}},
    )


def echo_registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    return reg


async def fire_times(host: FlowTestHost) -> list[str]:
    runs = await host.store.list_runs(RunQuery(flow_id="f", limit=100))
    outputs = []
    for run in runs:
        state = await host.wait(run.run_id)
        outputs.append(state.steps["a"].output)
    return sorted(outputs)


async def test_cron_fires_once_per_fire_time_on_advance() -> None:
    async with FlowTestHost([cron_flow("0 * * * *")], echo_registry(), start=START) as host:
        await host.advance(timedelta(hours=3))
        assert await fire_times(host) == [
            datetime(2026, 1, 1, h, tzinfo=UTC).isoformat() for h in (1, 2, 3)
        ]
        again = await host.engine.fire_schedule("f", "tick", datetime(2026, 1, 1, 2, tzinfo=UTC))
        assert again is None
        await host.idle()
        assert len(await fire_times(host)) == 3


async def test_cron_pause_stops_firing_and_override_changes_the_schedule() -> None:
    async with FlowTestHost([cron_flow("0 * * * *")], echo_registry(), start=START) as host:
        await host.engine.set_schedule("f", "tick", paused=True)
        await host.advance(timedelta(hours=2))
        assert await fire_times(host) == []
        await host.engine.set_schedule("f", "tick", paused=False, cron_override="*/20 * * * *")
        await host.advance(timedelta(hours=1))  # 02:30 -> 03:30
        assert await fire_times(host) == [
            datetime(2026, 1, 1, 2, m, tzinfo=UTC).isoformat() for m in (40,)
        ] + [datetime(2026, 1, 1, 3, m, tzinfo=UTC).isoformat() for m in (0, 20)]


async def test_a_cancelled_step_retried_finishes_its_run() -> None:
    """Cancel, then retry the cancelled step: the run ends once the step does (found by the
    README tour: `floworch cancel RUN` then `floworch retry RUN STEP` left the run Running)."""
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    manifest = flow(
        {
            "gate": {"type": "WaitForSignal", "inputs": {"signalName": "go"}},
            "after": {"type": "Echo", "inputs": 1, "runAfter": {"gate": ["Succeeded"]}},
        }
    )
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        await host.wait_step(run_id, "gate", status="Waiting")
        assert await host.cancel(run_id)
        cancelled = await host.wait(run_id)
        assert cancelled.status == "Cancelled"
        await host.retry_step(run_id, "gate")
        await host.signal(run_id, "go", {"ok": True})
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert run.steps["after"].output == 1
