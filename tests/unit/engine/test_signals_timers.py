"""WaitForSignal (buffered, concurrent, timeout), Delay steps and run timeouts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from floworch.engine.handlers import HandlerRegistry
from floworch.storage.records import SignalOutcome
from floworch.testing.host import FlowTestHost

from .support import START, flow


def registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    return reg


WAIT = {"type": "WaitForSignal", "inputs": {"signalName": "approval", "timeoutSeconds": 3600}}


async def test_early_signal_is_buffered_and_consumed_when_the_step_waits() -> None:
    manifest = flow(
        {
            "delay": {"type": "Delay", "inputs": {"delaySeconds": 60}},
            "approve": {**WAIT, "runAfter": {"delay": ["Succeeded"]}},
        }
    )
    async with FlowTestHost([manifest], registry(), start=START) as host:
        run_id = await host.trigger("f")
        assert await host.signal(run_id, "approval", {"ok": True}) == "Buffered"
        assert await host.signal(run_id, "approval", {"ok": False}) == "AlreadyDelivered"
        await host.advance(timedelta(seconds=60))
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert run.steps["approve"].output == {"ok": True}


async def test_second_delivery_to_a_waiting_step_is_already_delivered() -> None:
    async with FlowTestHost([flow({"approve": WAIT})], registry()) as host:
        run_id = await host.trigger("f")
        await host.idle()
        assert await host.signal(run_id, "approval", 1) == "Delivered"
        run = await host.wait(run_id)
        assert await host.engine.deliver_signal(run_id, "approval", 2) == "NotFound"
    assert run.steps["approve"].output == 1


async def test_fifty_concurrent_deliveries_exactly_one_wins() -> None:
    manifest = flow({"approve": WAIT, "after": {"type": "Echo", "runAfter": {"approve": []}}})
    async with FlowTestHost([manifest], registry()) as host:
        run_id = await host.trigger("f")
        outcomes = await asyncio.gather(
            *(host.engine.deliver_signal(run_id, "approval", {"n": i}) for i in range(50))
        )
        run = await host.wait(run_id)
    assert outcomes.count(SignalOutcome.DELIVERED) == 1
    assert set(outcomes) <= {"Delivered", "AlreadyDelivered", "NotFound"}
    winner = outcomes.index(SignalOutcome.DELIVERED)
    assert run.steps["approve"].output == {"n": winner}
    assert run.status == "Succeeded"


async def test_signal_timeout_times_out_the_step() -> None:
    async with FlowTestHost([flow({"approve": WAIT})], registry()) as host:
        run_id = await host.trigger("f")
        await host.advance(timedelta(seconds=3599))
        assert (await host.get(run_id)).steps["approve"].status == "Waiting"
        await host.advance(timedelta(seconds=1))
        run = await host.wait(run_id)
        assert await host.engine.deliver_signal(run_id, "approval") == "NotFound"
    assert run.steps["approve"].status == "TimedOut"
    assert run.steps["approve"].error["type"] == "SignalTimeout"
    assert run.status == "Failed"


async def test_delay_seconds_is_a_timer() -> None:
    manifest = flow({"wait": {"type": "Delay", "inputs": {"delaySeconds": 90}}})
    async with FlowTestHost([manifest], registry(), start=START) as host:
        run_id = await host.trigger("f")
        await host.advance(timedelta(seconds=89))
        assert (await host.get(run_id)).steps["wait"].status == "Waiting"
        await host.advance(timedelta(seconds=1))
        run = await host.wait(run_id)
    assert run.status == "Succeeded"
    assert run.steps["wait"].output == {"until": (START + timedelta(seconds=90)).isoformat()}


async def test_delay_until_a_time() -> None:
    until = START + timedelta(hours=2)
    manifest = flow({"wait": {"type": "Delay", "inputs": {"until": "@triggerBody()"}}})
    async with FlowTestHost([manifest], registry(), start=START) as host:
        run_id = await host.trigger("f", body=until.isoformat())
        await host.advance(timedelta(hours=1))
        assert (await host.get(run_id)).steps["wait"].status == "Waiting"
        await host.advance(timedelta(hours=1))
        run = await host.wait(run_id)
    assert run.status == "Succeeded"


async def test_run_timeout_times_the_run_out() -> None:
    manifest = flow({"approve": WAIT}, timeoutSeconds=600)
    async with FlowTestHost([manifest], registry()) as host:
        run_id = await host.trigger("f")
        await host.advance(timedelta(seconds=601))
        run = await host.wait(run_id)
    assert run.status == "TimedOut"
    assert run.steps["approve"].status == "Cancelled"
    assert run.steps["approve"].error["type"] == "RunTimedOut"
