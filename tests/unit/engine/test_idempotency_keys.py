"""ctx.idempotency_key is stable across every attempt of a step; ctx.attempt_key is not (9.9)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry
from floworch.errors import StepError
from floworch.testing.host import FlowTestHost

from .support import flow


def charging(plan: list[str]) -> tuple[HandlerRegistry, list[tuple[str, str, str]]]:
    """A Charge handler that follows ``plan`` ("retry", "fail" or "ok" per call)."""
    reg = HandlerRegistry()
    seen: list[tuple[str, str, str]] = []

    @reg.handler("Charge")
    async def charge(ctx: StepContext, inputs: Any) -> Any:
        seen.append((ctx.run_id, ctx.idempotency_key, ctx.attempt_key))
        action = plan.pop(0)
        if action == "retry":
            raise ConnectionError("provider unreachable")
        if action == "fail":
            raise StepError("declined", retryable=False)
        return {"charged": True}

    return reg, seen


RETRY = {"maxAttempts": 3, "initialIntervalSeconds": 1}


async def test_the_key_is_the_same_across_automatic_and_manual_retries() -> None:
    reg, seen = charging(["retry", "fail", "ok"])
    manifest = flow({"charge": {"type": "Charge", "retry": RETRY}})
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        await host.idle()
        await host.advance(timedelta(seconds=1))
        assert (await host.wait(run_id)).status == "Failed"
        await host.retry_step(run_id, "charge")
        assert (await host.wait(run_id)).status == "Succeeded"
    assert len(seen) == 3
    assert {key for _, key, _ in seen} == {f"{run_id}:charge"}
    assert len({attempt for _, _, attempt in seen}) == 3


async def test_a_rerun_gets_another_key() -> None:
    reg, seen = charging(["ok", "ok"])
    async with FlowTestHost([flow({"charge": {"type": "Charge"}})], reg) as host:
        first = await host.trigger("f")
        await host.wait(first)
        second = await host.rerun(first)
        await host.wait(second)
    assert seen[0][1] != seen[1][1]
    assert seen[1][1] == f"{second}:charge"


async def test_body_steps_of_a_retried_foreach_keep_their_keys() -> None:
    reg, seen = charging(["ok", "fail", "ok", "ok"])
    body = {"charge": {"type": "Charge"}}
    manifest = flow(
        {"each": {"type": "ForEach", "forEach": [1, 2], "steps": body, "concurrencyLimit": 1}}
    )
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        assert (await host.wait(run_id)).status == "Failed"
        await host.retry_step(run_id, "each")
        assert (await host.wait(run_id)).status == "Succeeded"
    keys = [key for _, key, _ in seen]
    assert keys == [f"{run_id}:each.{i}.charge" for i in (0, 1, 0, 1)]
    assert len({attempt for _, _, attempt in seen}) == 4
