"""Outcomes the store cannot keep fail the step once, decided by the engine (issues 16.1, 16.10,
16.11): the handler is not run again and the run does not stay Running."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from floworch import limits
from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry, StepResult
from floworch.engine.storable import clean_text, json_problem
from floworch.errors import EnvelopeError, StepError
from floworch.testing.host import FlowTestHost

from .support import flow


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


BAD_OUTPUTS = {
    "set": {1, 2},
    "bytes": {"data": b"\x00\x01"},
    "nan": {"ratio": float("nan")},
    "infinity": [1.0, float("inf")],
    "deep": nested(5000),
    "too-deep": nested(limits.MAX_STORED_JSON_NESTING + 1),
    "too-large": "x" * (limits.MAX_STORED_JSON_BYTES + 1),
    "object": {"when": object()},
}

RETRY = {"maxAttempts": 5, "initialIntervalSeconds": 1}


def returning(value: Any, calls: list[int]) -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Bad")
    def bad(inputs: Any) -> Any:  # sync: runs in a thread like most user handlers
        calls.append(1)
        return value

    return reg


@pytest.mark.parametrize("kind", sorted(BAD_OUTPUTS))
async def test_an_unstorable_output_fails_the_step_once(kind: str) -> None:
    calls: list[int] = []
    manifest = flow({"bad": {"type": "Bad", "retry": RETRY}})
    async with FlowTestHost([manifest], returning(BAD_OUTPUTS[kind], calls)) as host:
        run_id = await host.trigger("f")
        run = await host.wait(run_id, timeout=30)
        await host.advance(timedelta(minutes=5))  # no retry is due, nothing is taken over
        attempts = await host.store.get_attempts(run_id)
    assert run.status == "Failed"
    step = run.steps["bad"]
    assert step.status == "Failed"
    assert step.error["type"] == "OutputNotStorable"
    assert "cannot be stored" in step.error["message"]
    assert step.output is None
    assert calls == [1]
    assert [a.error["type"] for a in attempts] == ["OutputNotStorable"]
    json.dumps(run.to_dict(), allow_nan=False)  # what --json prints stays valid JSON


async def test_a_polled_output_that_cannot_be_stored_fails_too() -> None:
    calls: list[int] = []
    value = StepResult.pending(delay=timedelta(seconds=5), output={"progress": float("nan")})
    async with FlowTestHost([flow({"bad": {"type": "Bad"}})], returning(value, calls)) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.steps["bad"].error["type"] == "OutputNotStorable"
    assert calls == [1]


async def test_forEach_items_that_cannot_be_stored_fail_the_loop() -> None:
    reg = HandlerRegistry()

    @reg.handler("Noop")
    async def noop(inputs: Any) -> Any:
        return None

    body = {"n": {"type": "Noop"}}
    # Each half fits the store (a trigger body that does not is refused before a run exists);
    # the items the loop would keep are twice as large.
    half = ["x" * (limits.MAX_STORED_JSON_BYTES // 2 + 10)]
    items = "@concat(triggerBody(), triggerBody())"
    manifest = flow({"each": {"type": "ForEach", "forEach": items, "steps": body}})
    async with FlowTestHost([manifest], reg) as host:
        run = await host.wait(await host.trigger("f", body=half))
    assert run.status == "Failed"
    assert run.steps["each"].error["type"] == "OutputNotStorable"
    assert "ForEach items" in run.steps["each"].error["message"]


async def test_an_unstorable_error_is_stored_with_its_details_replaced() -> None:
    reg = HandlerRegistry()

    @reg.handler("Bad")
    async def bad(inputs: Any) -> Any:
        raise StepError("bad\x00card " + "y" * 20_000, retryable=False, details={1, 2})

    async with FlowTestHost([flow({"bad": {"type": "Bad"}})], reg) as host:
        run_id = await host.trigger("f")
        run = await host.wait(run_id)
        events = await host.store.list_events(run_id)
    error = run.steps["bad"].error
    assert error["type"] == "StepError"
    assert "\x00" not in error["message"] and error["message"].startswith("bad\\x00card")
    assert len(error["message"]) <= limits.MAX_ERROR_MESSAGE_LENGTH
    assert error["details"].startswith("(not storable:")
    assert all("\x00" not in e.message for e in events)


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({"delaySeconds": "@triggerBody()"}, "Delay inputs.delaySeconds"),
        ({"signalName": "go", "timeoutSeconds": "@triggerBody()"}, "timeoutSeconds"),
    ],
)
# Infinity cannot reach a duration any more: a trigger body or output holding it is refused.
@pytest.mark.parametrize("seconds", [1e20, -5, "soon"])
async def test_a_computed_duration_out_of_range_fails_the_step(
    inputs: dict[str, Any], needle: str, seconds: Any
) -> None:
    step_type = "Delay" if "delaySeconds" in inputs else "WaitForSignal"
    manifest = flow({"wait": {"type": step_type, "inputs": inputs}})
    async with FlowTestHost([manifest], HandlerRegistry()) as host:
        run = await host.wait(await host.trigger("f", body=seconds), timeout=30)
    assert run.status == "Failed"
    error = run.steps["wait"].error
    assert error["type"] == "InvalidDuration"
    assert needle in error["message"]


async def test_a_pending_delay_past_the_limit_fails_the_step() -> None:
    calls: list[int] = []
    value = StepResult.pending(delay=timedelta.max)
    async with FlowTestHost([flow({"bad": {"type": "Bad"}})], returning(value, calls)) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.steps["bad"].error["type"] == "InvalidDuration"
    assert calls == [1]


async def test_a_computed_signal_name_too_long_for_the_store_fails_the_step() -> None:
    manifest = flow({"wait": {"type": "WaitForSignal", "inputs": {"signalName": "@triggerBody()"}}})
    async with FlowTestHost([manifest], HandlerRegistry()) as host:
        run = await host.wait(await host.trigger("f", body="s" * 500))
    assert run.steps["wait"].error["type"] == "StepError"
    assert "signal name is 500 characters long" in run.steps["wait"].error["message"]


async def test_a_nul_inside_an_output_is_stored_as_it_is() -> None:
    calls: list[int] = []
    value = {"text": "a\x00b"}
    async with FlowTestHost([flow({"ok": {"type": "Bad"}})], returning(value, calls)) as host:
        run = await host.wait(await host.trigger("f"))
    assert run.status == "Succeeded" and run.steps["ok"].output == value


def test_json_problem_accepts_json_and_names_the_problem() -> None:
    assert json_problem({"a": [1, 2.5, "x", None, True]}) is None
    assert json_problem(nested(limits.MAX_STORED_JSON_NESTING)) is None
    assert "NaN or Infinity" in (json_problem(float("nan")) or "")
    assert "set" in (json_problem({1}) or "")
    assert "levels deep" in (json_problem(nested(limits.MAX_STORED_JSON_NESTING + 1)) or "")
    assert clean_text("a\x00b") == "a\\x00b"


def test_a_trace_context_that_is_not_an_object_is_a_bad_envelope() -> None:
    body = {"v": 1, "flowId": "f", "runId": "r", "stepKey": "s", "stepType": "T", "seq": 1}
    with pytest.raises(EnvelopeError, match="traceContext must be an object"):
        StepEnvelope.from_dict({**body, "traceContext": "00-abc"})
