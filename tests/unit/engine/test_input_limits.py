"""Values the engine receives at run time obey the same limits as manifests (issue 16 item 8).

Idempotency keys and signal names come from the CLI, the API and trigger messages; signal names
and ForEach items can come from expressions. The memory store keeps anything, so before these
checks a key too long for its SQL column passed here and failed on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from floworch import limits
from floworch.engine.context import StepContext
from floworch.engine.handlers import HandlerRegistry
from floworch.errors import FlowError, InvalidInputError
from floworch.storage.records import RunQuery
from floworch.testing.host import FlowTestHost

from .support import flow


def _registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(ctx: StepContext, inputs: Any) -> Any:
        return inputs

    return reg


@pytest.mark.parametrize(
    "key", ["k" * (limits.IDEMPOTENCY_KEY_MAX_LENGTH + 1), "", "order-1\n", "a\x00b"]
)
async def test_an_idempotency_key_that_breaks_the_limits_is_refused(key: str) -> None:
    async with FlowTestHost([flow({"a": {"type": "Echo"}})], _registry()) as host:
        with pytest.raises(InvalidInputError) as caught:
            await host.trigger("f", idempotency_key=key)
        assert caught.value.field == "idempotency key"
        assert isinstance(caught.value, FlowError)


async def test_the_longest_idempotency_key_is_accepted() -> None:
    key = "k" * limits.IDEMPOTENCY_KEY_MAX_LENGTH
    async with FlowTestHost([flow({"a": {"type": "Echo"}})], _registry()) as host:
        first = await host.trigger("f", idempotency_key=key)
        assert await host.trigger("f", idempotency_key=key) == first


async def test_a_signal_name_that_breaks_the_limits_is_refused() -> None:
    manifest = flow({"w": {"type": "WaitForSignal", "inputs": {"signalName": "go"}}})
    async with FlowTestHost([manifest], _registry()) as host:
        run_id = await host.trigger("f")
        await host.wait_step(run_id, "w", status="Waiting")
        with pytest.raises(InvalidInputError) as caught:
            await host.signal(run_id, "s" * (limits.SIGNAL_NAME_MAX_LENGTH + 1))
        assert str(caught.value) == "signal name is 101 characters long; the limit is 100"
        assert await host.signal(run_id, "go", {"ok": True}) == "Delivered"
        assert (await host.wait(run_id)).status == "Succeeded"


async def test_a_signal_name_resolved_from_an_expression_is_checked() -> None:
    manifest = flow({"w": {"type": "WaitForSignal", "inputs": {"signalName": "@triggerBody()"}}})
    async with FlowTestHost([manifest], _registry()) as host:
        run = await host.wait(await host.trigger("f", body="approval\n"))
    assert run.status == "Failed"
    assert run.steps["w"].error["message"] == (
        "signal name 'approval\\n' contains '\\n'; only printable characters are allowed"
    )


async def test_a_foreach_over_more_items_than_the_limit_fails_its_step() -> None:
    manifest = flow(
        {"each": {"type": "ForEach", "forEach": "@triggerBody()", "steps": {"b": {"type": "Echo"}}}}
    )
    async with FlowTestHost([manifest], _registry()) as host:
        run = await host.wait(await host.trigger("f", body=[0] * (limits.MAX_FOR_EACH_ITEMS + 1)))
    assert run.status == "Failed"
    error = run.steps["each"].error
    assert error["type"] == "ForEachItemsError"
    assert error["message"] == "forEach resolved to 100001 items; the limit is 100000"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("x" * (limits.MAX_STORED_JSON_BYTES + 1), "the limit is"),
        ({"amount": float("nan")}, "NaN or Infinity"),
        ({"raw": b"bytes"}, "only JSON values can be stored"),
    ],
    ids=["too-large", "nan", "bytes"],
)
async def test_a_trigger_body_the_store_cannot_keep_is_refused_before_a_run_exists(
    body: Any, problem: str
) -> None:
    async with FlowTestHost([flow({"a": {"type": "Echo"}})], _registry()) as host:
        with pytest.raises(InvalidInputError) as caught:
            await host.trigger("f", body=body)
        assert caught.value.field == "trigger body"
        assert str(caught.value).startswith("the trigger body cannot be stored: ")
        assert problem in str(caught.value)
        assert await host.store.list_runs(RunQuery()) == []


async def test_a_trigger_body_nested_too_deeply_is_refused() -> None:
    deep: Any = 0
    for _ in range(limits.MAX_STORED_JSON_NESTING + 1):
        deep = [deep]
    async with FlowTestHost([flow({"a": {"type": "Echo"}})], _registry()) as host:
        with pytest.raises(InvalidInputError, match="nested 101 levels deep"):
            await host.trigger("f", body=deep)
        almost = deep[0]  # at the limit: kept and passed on as it is
        run = await host.wait(await host.trigger("f", body=almost))
    assert run.status == "Succeeded"
