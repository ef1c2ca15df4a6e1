"""Retry policies, step timeouts, cancellation and polling."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import timedelta
from typing import Any

from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry, StepResult
from floworch.errors import StepError
from floworch.testing.host import FlowTestHost

from .support import flow

RETRY = {"maxAttempts": 3, "initialIntervalSeconds": 10, "backoffCoefficient": 2.0}


def failing(error: BaseException) -> tuple[HandlerRegistry, list[int]]:
    reg = HandlerRegistry()
    calls: list[int] = []

    @reg.handler("Flaky")
    async def flaky(ctx: StepContext, inputs: Any) -> Any:
        calls.append(ctx.attempt)
        raise error

    return reg, calls


async def test_retry_backs_off_exponentially_and_exhausts() -> None:
    reg, calls = failing(ConnectionError("down"))
    manifest = flow({"call": {"type": "Flaky", "retry": RETRY}})
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        await host.idle()
        assert calls == [1]
        assert (await host.get(run_id)).steps["call"].status == "Waiting"
        await host.advance(timedelta(seconds=9))
        assert calls == [1]
        await host.advance(timedelta(seconds=1))
        assert calls == [1, 2]
        await host.advance(timedelta(seconds=19))
        assert calls == [1, 2]
        await host.advance(timedelta(seconds=1))
        assert calls == [1, 2, 3]
        run = await host.wait(run_id)
        attempts = await host.store.get_attempts(run_id, "call")
    assert run.status == "Failed"
    assert run.steps["call"].status == "Failed"
    assert run.steps["call"].attempts == 3
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert all(a.status == "Failed" for a in attempts)
    assert all(a.error["type"] == "ConnectionError" for a in attempts)
    gaps = [b.completed_at - a.completed_at for a, b in itertools.pairwise(attempts)]
    assert gaps == [timedelta(seconds=10), timedelta(seconds=20)]


async def test_retry_then_success() -> None:
    reg = HandlerRegistry()

    @reg.handler("Flaky")
    async def flaky(ctx: StepContext, inputs: Any) -> Any:
        if ctx.attempt < 2:
            raise ConnectionError("down")
        return {"attempt": ctx.attempt}

    manifest = flow({"call": {"type": "Flaky", "retry": RETRY}})
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        await host.advance(timedelta(seconds=10))
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert run.steps["call"].output == {"attempt": 2}
    assert run.steps["call"].attempts == 2
    assert run.steps["call"].error is None


async def test_retry_on_filters_error_types() -> None:
    reg, calls = failing(KeyError("nope"))
    manifest = flow({"call": {"type": "Flaky", "retry": {**RETRY, "retryOn": ["ConnectionError"]}}})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert calls == [1]
    assert run.status == "Failed"
    assert run.steps["call"].error["type"] == "KeyError"


async def test_retry_on_retries_listed_error_types() -> None:
    reg, calls = failing(ConnectionError("down"))
    manifest = flow({"call": {"type": "Flaky", "retry": {**RETRY, "retryOn": ["ConnectionError"]}}})
    async with FlowTestHost([manifest], reg) as host:
        await host.trigger("f")
        await host.advance(timedelta(seconds=10))
        assert calls == [1, 2]


async def test_non_retryable_step_error_is_not_retried() -> None:
    reg, calls = failing(StepError("bad request", retryable=False))
    manifest = flow({"call": {"type": "Flaky", "retry": RETRY}})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert calls == [1]
    assert run.status == "Failed"
    assert run.steps["call"].error["message"] == "bad request"


async def test_async_handler_past_its_timeout_times_out() -> None:
    reg = HandlerRegistry()
    saw_cancel: list[bool] = []

    @reg.handler("Sleepy")
    async def sleepy(ctx: StepContext, inputs: Any) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw_cancel.append(True)
            raise
        return "late"

    manifest = flow({"slow": {"type": "Sleepy", "timeoutSeconds": 0.1}})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.status == "Failed"
    assert run.steps["slow"].status == "TimedOut"
    assert run.steps["slow"].error["type"] == "StepTimeoutError"
    assert saw_cancel == [True]


async def test_sync_handler_sees_cancellation_on_timeout() -> None:
    reg = HandlerRegistry()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    @reg.handler("Busy")
    def busy(ctx: StepContext, inputs: Any) -> Any:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ctx.cancellation.is_set:
                loop.call_soon_threadsafe(stopped.set)
                return "stopped"
            time.sleep(0.005)
        return "never cancelled"

    manifest = flow({"busy": {"type": "Busy", "timeoutSeconds": 0.1}})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
        await asyncio.wait_for(stopped.wait(), timeout=10)
    assert run.steps["busy"].status == "TimedOut"


async def test_cancel_reaches_a_running_handler_and_stops_dispatch() -> None:
    reg = HandlerRegistry()
    started = asyncio.Event()
    reasons: list[str | None] = []
    later: list[str] = []

    @reg.handler("Long")
    async def long(ctx: StepContext, inputs: Any) -> Any:
        started.set()
        reasons.append(await ctx.cancellation.wait())
        return "stopped"

    @reg.handler("Next")
    async def nxt(inputs: Any) -> Any:
        later.append("ran")
        return "ran"

    manifest = flow(
        {
            "long": {"type": "Long"},
            "next": {"type": "Next", "runAfter": {"long": ["Succeeded", "Cancelled"]}},
        }
    )
    async with FlowTestHost([manifest], reg) as host:
        result = await host.engine.trigger("f")
        assert result.run_id is not None
        await asyncio.wait_for(started.wait(), timeout=10)
        assert await host.cancel(result.run_id, "stop now") is True
        run = await host.wait(result.run_id)
        await host.idle()
        sent_after = host._host.dispatcher.sent
        await host.advance(timedelta(minutes=5))
        events = [e.kind for e in await host.store.list_events(result.run_id)]
        assert host._host.dispatcher.sent == sent_after
    assert reasons == ["stop now"]
    assert run.status == "Cancelled"
    assert run.steps["long"].status == "Cancelled"
    assert "next" not in run.steps
    assert later == []
    assert "RunCancelled" in events


async def test_pending_result_polls_until_done() -> None:
    reg = HandlerRegistry()
    calls: list[int] = []

    @reg.handler("Poll")
    async def poll(ctx: StepContext, inputs: Any) -> Any:
        calls.append(ctx.poll_count)
        if len(calls) < 3:
            return StepResult.pending(delay=timedelta(seconds=30), output={"n": len(calls)})
        return {"done": True}

    manifest = flow({"p": {"type": "Poll"}})
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        await host.idle()
        state = await host.get(run_id)
        assert state.steps["p"].status == "Waiting"
        assert state.steps["p"].output == {"n": 1}
        await host.advance(timedelta(seconds=29))
        assert len(calls) == 1
        await host.advance(timedelta(seconds=31))
        run = await host.wait(run_id)
    assert calls == [0, 1, 2]
    assert run.status == "Succeeded"
    assert run.steps["p"].output == {"done": True}


async def test_poll_policy_condition_path_stops_polling() -> None:
    reg = HandlerRegistry()
    calls = 0

    @reg.handler("Status")
    async def status(inputs: Any) -> Any:
        nonlocal calls
        calls += 1
        return {"job": {"state": "done" if calls >= 3 else "running"}}

    poll = {"intervalSeconds": 5, "conditionPath": "job.state", "conditionEquals": "done"}
    manifest = flow({"s": {"type": "Status", "poll": poll}})
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        await host.idle()
        assert calls == 1
        await host.advance(timedelta(seconds=5))
        assert calls == 2
        await host.advance(timedelta(seconds=5))
        run = await host.wait(run_id)
    assert calls == 3
    assert run.status == "Succeeded"
    assert run.steps["s"].output == {"job": {"state": "done"}}


async def test_poll_policy_timeout_times_out() -> None:
    reg = HandlerRegistry()

    @reg.handler("Status")
    async def status(inputs: Any) -> Any:
        return {"state": "running"}

    poll = {
        "intervalSeconds": 5,
        "timeoutSeconds": 20,
        "conditionPath": "state",
        "conditionEquals": "done",
    }
    manifest = flow({"s": {"type": "Status", "poll": poll}})
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        await host.advance(timedelta(seconds=60))
        run = await host.wait(run_id)
    assert run.status == "Failed"
    assert run.steps["s"].status == "TimedOut"
    assert run.steps["s"].error["type"] == "PollTimeout"
