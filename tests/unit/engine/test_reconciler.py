"""The reconciler: unsent ledger rows are re-sent, lapsed leases are taken over."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.errors import TransportError
from floworch.model.statuses import StepStatus
from floworch.storage.records import ClaimOutcome

from .support import RecordingDispatcher, flow, manual_engine


class FlakyDispatcher(RecordingDispatcher):
    """Fails the first enqueue with a transport error."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 1

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise TransportError("broker unreachable")
        await super().enqueue(envelopes)


def registry(calls: list[str]) -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        calls.append("ran")
        return "done"

    return reg


async def test_a_ledger_row_never_sent_is_sent_again() -> None:
    calls: list[str] = []
    engine, _, clock = manual_engine(flow({"s": {"type": "Work"}}), registry(calls))
    flaky = FlakyDispatcher()
    engine.core.dispatcher = flaky
    result = await engine.trigger("f")
    assert result.run_id is not None
    assert flaky.sent == []
    clock.advance(timedelta(seconds=10))
    report = await engine.reconcile()
    assert report.resent == 1
    (envelope,) = flaky.take()
    assert envelope.step_key == "s" and envelope.seq == 1
    assert await engine.run_step(envelope) == ClaimOutcome.ACQUIRED
    run = await engine.get_run(result.run_id)
    assert run.status == "Succeeded"
    assert calls == ["ran"]
    assert (await engine.reconcile()).resent == 0


async def test_an_expired_lease_is_taken_over() -> None:
    calls: list[str] = []
    engine, dispatcher, clock = manual_engine(flow({"s": {"type": "Work"}}), registry(calls))
    result = await engine.trigger("f")
    assert result.run_id is not None
    (envelope,) = dispatcher.take()
    dead = await engine.store.claim_step(
        result.run_id,
        "s",
        envelope.seq,
        owner="dead-worker",
        lease_until=clock.now() + timedelta(seconds=5),
        now=clock.now(),
    )
    assert dead.outcome == ClaimOutcome.ACQUIRED
    assert (await engine.reconcile()).taken_over == 0  # the lease is still live
    clock.advance(timedelta(seconds=6))
    report = await engine.reconcile()
    assert report.taken_over == 1
    (again,) = dispatcher.take()
    assert again.seq == envelope.seq + 1
    assert await engine.run_step(envelope) == ClaimOutcome.STALE
    assert await engine.run_step(again) == ClaimOutcome.ACQUIRED
    run = await engine.get_run(result.run_id)
    assert run.status == "Succeeded"
    assert run.steps["s"].status == StepStatus.SUCCEEDED
    assert calls == ["ran"]
    events = [e.kind for e in await engine.store.list_events(result.run_id)]
    assert "StepLeaseExpired" in events
