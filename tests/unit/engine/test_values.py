"""The typed values a step outcome travels as: instance keys, errors, When traces, verdicts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from floworch.engine.handlers import HandlerRegistry
from floworch.engine.outcomes import HandlerResultKind
from floworch.engine.step_errors import ErrorInfo, ErrorType
from floworch.engine.when import StepWhenTrace
from floworch.errors import StepError
from floworch.model.instance_key import (
    InstanceKey,
    InstanceKeyError,
    descendants_prefix,
    is_inside,
    is_root_key,
)
from floworch.model.statuses import StepStatus
from floworch.testing.host import FlowTestHost

from .support import flow


def test_instance_keys_parse_and_format_round_trip() -> None:
    for text in ("fetch", "each.3.charge", "outer.0.inner.12.child"):
        assert str(InstanceKey.parse(text)) == text
    key = InstanceKey.parse("outer.0.inner.3.child")
    assert key.loops == (("outer", 0), ("inner", 3))
    assert key.step == "child"
    assert key.prefix == "outer.0.inner.3."
    assert key.template == "outer.inner.child"
    assert key.top == "outer"
    assert key.index == 3
    assert str(key.loop) == "outer.0.inner"
    assert [str(k) for k in key.enclosing_loops()] == ["outer.0.inner", "outer"]
    assert key.scope_prefixes() == ["outer.0.inner.3.", "outer.0.", ""]
    assert str(key.sibling("other")) == "outer.0.inner.3.other"
    assert str(InstanceKey.parse("each").child(2, "charge")) == "each.2.charge"


def test_a_top_level_key_has_no_loop() -> None:
    key = InstanceKey.parse("fetch")
    assert key.is_root and key.loop is None and key.index is None
    assert key.prefix == "" and key.top == "fetch" and key.scope_prefixes() == [""]
    assert is_root_key("fetch") and not is_root_key("each.0.a")
    assert descendants_prefix("each") == "each."
    assert is_inside("each.0.a", "each") and not is_inside("eachother", "each")


@pytest.mark.parametrize("text", ["", "a.b", "a.x.b", "a..b", "a.1.", ".1.a", "a.\u0661.b"])
def test_malformed_instance_keys_are_refused(text: str) -> None:
    with pytest.raises(InstanceKeyError, match="not a step instance key"):
        InstanceKey.parse(text)


def test_error_info_keeps_the_stored_json_shape() -> None:
    stored = {"type": "ForEachFailed", "message": "1 of 2 iterations failed", "items": [1]}
    error = ErrorInfo.from_json(stored)
    assert error is not None
    assert error.type == ErrorType.FOR_EACH_FAILED
    assert error.extra == {"items": [1]}
    assert error.to_json() == stored
    assert ErrorInfo.from_json(None) is None


def test_error_info_of_an_exception_has_type_message_traceback_and_details() -> None:
    try:
        raise StepError("card declined", details={"code": 51})
    except StepError as exc:
        error = ErrorInfo.from_exception(exc)
    data = error.to_json()
    assert data["type"] == "StepError"
    assert data["message"] == "card declined"
    assert data["details"] == {"code": 51}
    assert "Traceback" in data["traceback"]
    assert (
        "traceback" not in ErrorInfo.from_exception(ValueError("x"), with_traceback=False).to_json()
    )


def test_when_trace_round_trips_its_stored_form() -> None:
    stored = [
        {
            "predecessor": "a",
            "expression": "@steps('a').output == 1",
            "resolved": "1 == 1",
            "result": True,
            "error": None,
        },
        {
            "predecessor": "b",
            "expression": "@x",
            "resolved": "@x",
            "result": False,
            "error": "boom",
        },
    ]
    trace = StepWhenTrace.from_json(stored)
    assert trace is not None
    assert trace.to_json() == stored
    assert not trace.passed
    assert trace.skip_reason == "when clause of runAfter.b failed: boom"
    assert StepWhenTrace.from_json(None) is None


def test_handler_result_kinds_map_to_step_statuses() -> None:
    assert HandlerResultKind.SUCCEEDED.step_status == StepStatus.SUCCEEDED
    assert HandlerResultKind.PENDING.step_status == StepStatus.WAITING
    assert HandlerResultKind.TIMED_OUT.step_status == StepStatus.TIMED_OUT


async def test_retry_on_matches_a_documented_error_type() -> None:
    reg = HandlerRegistry()
    calls: list[int] = []

    @reg.handler("Slow")
    async def slow(inputs: Any) -> Any:
        calls.append(1)
        await asyncio.sleep(5)

    manifest = flow(
        {
            "s": {
                "type": "Slow",
                "timeoutSeconds": 0.05,
                "retry": {
                    "maxAttempts": 2,
                    "initialIntervalSeconds": 1,
                    "retryOn": [str(ErrorType.STEP_TIMEOUT)],
                },
            }
        }
    )
    async with FlowTestHost([manifest], reg) as host:
        run_id = await host.trigger("f")
        await host.idle()
        await host.advance(timedelta(seconds=2))
        run = await host.wait(run_id)
    assert run.status == "Failed"
    assert len(calls) == 2
    assert run.steps["s"].error["type"] == "StepTimeoutError"
