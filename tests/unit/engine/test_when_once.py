"""A step's When clauses are decided once, on its first dispatch (issue 9.2): a Delay that
started waiting, a retry, a poll and a manual retry keep that decision and its stored trace."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry, StepResult
from floworch.errors import StepError
from floworch.testing.host import FlowTestHost

from .support import START, flow

# True at the first dispatch (START is 00:30:00), false once a minute has passed: a clause that
# is evaluated again on a later dispatch gives a different answer.
WHEN = "@utcNow() < '2026-01-01T00:31:00.000000Z'"


def registry(failures: int = 0, polls: int = 0) -> HandlerRegistry:
    reg = HandlerRegistry()
    left = {"failures": failures, "polls": polls}

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    @reg.handler("Work")
    async def work(ctx: StepContext, inputs: Any) -> Any:
        if left["failures"]:
            left["failures"] -= 1
            raise StepError("not yet", retryable=True)
        if left["polls"]:
            left["polls"] -= 1
            return StepResult.pending(delay=timedelta(minutes=2))
        return "worked"

    return reg


def gated(step: dict[str, Any]) -> dict[str, Any]:
    return flow(
        {
            "start": {"type": "Echo", "inputs": 1},
            "gated": {**step, "runAfter": {"start": {"statuses": ["Succeeded"], "when": WHEN}}},
            "after": {"type": "Echo", "inputs": 2, "runAfter": {"gated": ["Succeeded"]}},
        }
    )


def assert_trace_of_first_dispatch(trace: Any) -> None:
    assert isinstance(trace, list) and len(trace) == 1
    (clause,) = trace
    assert clause["predecessor"] == "start"
    assert clause["result"] is True
    assert clause["resolved"].startswith('"2026-01-01T00:30:00')


async def test_a_delay_that_started_waiting_is_not_skipped_when_it_wakes() -> None:
    manifest = gated({"type": "Delay", "inputs": {"delaySeconds": 90}})
    async with FlowTestHost([manifest], registry(), start=START) as host:
        run_id = await host.trigger("f")
        await host.idle()
        assert (await host.get(run_id)).steps["gated"].status == "Waiting"
        await host.advance(timedelta(seconds=90))
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert run.steps["gated"].status == "Succeeded"
    assert run.steps["after"].status == "Succeeded"
    assert_trace_of_first_dispatch(run.steps["gated"].when_trace)


async def test_an_automatic_retry_does_not_decide_again() -> None:
    step = {"type": "Work", "retry": {"maxAttempts": 2, "initialIntervalSeconds": 120}}
    async with FlowTestHost([gated(step)], registry(failures=1), start=START) as host:
        run_id = await host.trigger("f")
        await host.idle()
        waiting = (await host.get(run_id)).steps["gated"]
        assert waiting.status == "Waiting"
        assert_trace_of_first_dispatch(waiting.when_trace)
        await host.advance(timedelta(seconds=120))
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert run.steps["gated"].output == "worked"
    assert run.steps["gated"].attempts == 2
    assert_trace_of_first_dispatch(run.steps["gated"].when_trace)


async def test_a_poll_does_not_decide_again() -> None:
    async with FlowTestHost([gated({"type": "Work"})], registry(polls=2), start=START) as host:
        run_id = await host.trigger("f")
        await host.advance(timedelta(minutes=5))
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert run.steps["gated"].output == "worked"
    assert_trace_of_first_dispatch(run.steps["gated"].when_trace)


async def test_a_manual_retry_keeps_the_decision() -> None:
    reg = registry()
    attempts = {"n": 0}

    @reg.handler("Once")
    async def once(inputs: Any) -> Any:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise StepError("declined", retryable=False)
        return "ok"

    async with FlowTestHost([gated({"type": "Once"})], reg, start=START) as host:
        run_id = await host.trigger("f")
        assert (await host.wait(run_id)).status == "Failed"
        await host.advance(timedelta(minutes=5))
        await host.retry_step(run_id, "gated")
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert run.steps["gated"].output == "ok"
    assert_trace_of_first_dispatch(run.steps["gated"].when_trace)


async def test_a_false_clause_still_skips_on_the_first_dispatch() -> None:
    manifest = gated({"type": "Delay", "inputs": {"delaySeconds": 1}})
    async with FlowTestHost([manifest], registry(), start=START + timedelta(minutes=5)) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.steps["gated"].status == "Skipped"
    assert run.steps["gated"].skip_reason == "when clause of runAfter.start is false"
    assert run.steps["gated"].when_trace[0]["result"] is False
