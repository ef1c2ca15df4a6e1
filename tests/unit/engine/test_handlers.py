"""Handlers as the engine calls them: pydantic inputs, threads, the context, duplicate messages."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from floworch.engine.context import StepContext
from floworch.engine.engine import Engine
from floworch.engine.handlers import HandlerRegistry
from floworch.errors import FlowValidationError
from floworch.model import load_manifest
from floworch.storage.memory import MemoryStore
from floworch.storage.records import ClaimOutcome
from floworch.testing.host import FlowTestHost

from .support import RecordingDispatcher, flow, manual_engine


class Order(BaseModel):
    id: int
    amount: float


async def test_pydantic_inputs_are_validated_models() -> None:
    reg = HandlerRegistry()
    seen: list[Any] = []

    @reg.handler("Charge")
    async def charge(ctx: StepContext, inputs: Order) -> Any:
        seen.append(inputs)
        return {"charged": inputs.amount}

    manifest = flow({"c": {"type": "Charge", "inputs": {"id": 1, "amount": "2.5"}}})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.status == "Succeeded"
    assert seen == [Order(id=1, amount=2.5)]
    assert run.steps["c"].output == {"charged": 2.5}


async def test_invalid_pydantic_inputs_fail_without_retry() -> None:
    reg = HandlerRegistry()
    calls: list[Any] = []

    @reg.handler("Charge")
    async def charge(ctx: StepContext, inputs: Order) -> Any:
        calls.append(inputs)
        return None

    retry = {"maxAttempts": 3, "initialIntervalSeconds": 1}
    manifest = flow({"c": {"type": "Charge", "inputs": {"id": "x"}, "retry": retry}})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert calls == []
    assert run.status == "Failed"
    error = run.steps["c"].error
    assert error["type"] == "InputValidationError"
    assert "invalid inputs for 'Charge'" in error["message"]
    assert "id:" in error["message"] and "amount:" in error["message"]
    assert run.steps["c"].attempts == 1


async def test_sync_handlers_run_in_a_worker_thread() -> None:
    reg = HandlerRegistry()
    threads: list[int] = []

    @reg.handler("Sync")
    def sync(inputs: Any) -> Any:
        threads.append(threading.get_ident())
        return inputs + 1

    async with FlowTestHost([flow({"s": {"type": "Sync", "inputs": 1}})], reg) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.steps["s"].output == 2
    assert threads and threads[0] != threading.get_ident()


async def test_context_fields_and_redelivery_runs_the_handler_once() -> None:
    reg = HandlerRegistry()
    contexts: list[StepContext] = []

    @reg.handler("Ctx")
    async def ctx_handler(ctx: StepContext, inputs: Any) -> Any:
        contexts.append(ctx)
        return ctx.idempotency_key

    engine, dispatcher, _ = manual_engine(flow({"s": {"type": "Ctx"}}), reg)
    result = await engine.trigger("f", body={"b": 1}, headers={"X-Id": "9"})
    (envelope,) = dispatcher.take()
    assert await engine.run_step(envelope) == ClaimOutcome.ACQUIRED
    assert await engine.run_step(envelope) == ClaimOutcome.STALE
    assert len(contexts) == 1
    ctx = contexts[0]
    assert (ctx.run_id, ctx.flow_id, ctx.step_key, ctx.step_type) == (
        result.run_id,
        "f",
        "s",
        "Ctx",
    )
    assert ctx.attempt == 1
    assert ctx.trigger_body == {"b": 1}
    assert ctx.trigger_headers["X-Id"] == "9"
    assert ctx.idempotency_key
    run = await engine.get_run(result.run_id or "")
    assert run.status == "Succeeded"
    assert run.steps["s"].output == ctx.idempotency_key


async def test_each_retry_attempt_sees_its_attempt_number() -> None:
    reg = HandlerRegistry()
    keys: list[tuple[int, str]] = []

    @reg.handler("Flaky")
    async def flaky(ctx: StepContext, inputs: Any) -> Any:
        keys.append((ctx.attempt, ctx.idempotency_key))
        raise ConnectionError("down")

    manifest = flow({"s": {"type": "Flaky", "retry": {"maxAttempts": 2}}})
    engine, dispatcher, _clock = manual_engine(manifest, reg)
    await engine.trigger("f")
    (first,) = dispatcher.take()
    await engine.run_step(first)
    ((second, _),) = dispatcher.scheduled
    await engine.run_step(second)
    assert [a for a, _ in keys] == [1, 2]


async def test_duplicate_envelope_while_claimed_is_already_claimed() -> None:
    reg = HandlerRegistry()

    @reg.handler("Noop")
    async def noop(inputs: Any) -> Any:
        return None

    engine, dispatcher, clock = manual_engine(flow({"s": {"type": "Noop"}}), reg)
    result = await engine.trigger("f")
    (envelope,) = dispatcher.take()
    claim = await engine.store.claim_step(
        result.run_id or "",
        "s",
        envelope.seq,
        owner="other",
        lease_until=clock.now() + timedelta(seconds=30),
        now=clock.now(),
    )
    assert claim.outcome == ClaimOutcome.ACQUIRED
    assert await engine.run_step(envelope) == ClaimOutcome.ALREADY_CLAIMED


def test_unknown_step_type_is_rejected_at_construction() -> None:
    reg = HandlerRegistry()

    @reg.handler("Known")
    async def known(inputs: Any) -> Any:
        return None

    manifest = load_manifest(flow({"s": {"type": "Unknown"}}))
    with pytest.raises(FlowValidationError) as info:
        Engine(
            store=MemoryStore(), dispatcher=RecordingDispatcher(), flows=[manifest], handlers=reg
        )
    message = str(info.value)
    assert "steps.s.type" in message
    assert "'Unknown'" in message
    assert "Known" in message and "ForEach" in message
