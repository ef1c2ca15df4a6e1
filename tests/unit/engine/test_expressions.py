"""Expressions as steps see them: headers, interpolation, other steps' status and error."""

from __future__ import annotations

from typing import Any

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
        raise RuntimeError("broken pipe")

    return reg


async def test_trigger_headers_and_interpolation_in_inputs() -> None:
    manifest = flow(
        {
            "e": {
                "type": "Echo",
                "inputs": {
                    "id": "@triggerHeaders()['X-Id']",
                    "lower": "@triggerHeaders()['x-id']",
                    "text": "Order @{triggerBody()?.id} for @{triggerBody()?.who}",
                    "nested": ["@triggerBody()?.id", {"missing": "@triggerBody()?.nope"}],
                },
            }
        }
    )
    async with FlowTestHost([manifest], registry()) as host:
        run_id = await host.trigger("f", body={"id": 42, "who": "Ann"}, headers={"X-Id": "abc"})
        run = await host.wait(run_id)
    assert run.steps["e"].output == {
        "id": "abc",
        "lower": "abc",
        "text": "Order 42 for Ann",
        "nested": [42, {"missing": None}],
    }


async def test_steps_status_and_error_are_readable() -> None:
    manifest = flow(
        {
            "bad": {"type": "Boom"},
            "report": {
                "type": "Echo",
                "inputs": {
                    "status": "@steps('bad').status",
                    "message": "@steps('bad').error.message",
                    "type": "@steps('bad').error.type",
                },
                "runAfter": {"bad": ["Failed"]},
            },
        }
    )
    async with FlowTestHost([manifest], registry()) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.status == "Succeeded"
    assert run.steps["report"].output == {
        "status": "Failed",
        "message": "broken pipe",
        "type": "RuntimeError",
    }
