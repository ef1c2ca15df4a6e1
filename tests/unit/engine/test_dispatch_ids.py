"""Message ids (``<runId>:<stepKey>:<seq>``) never repeat within a run (issue 9.1), and the
reconciler leaves parked steps alone (issue 16.3)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.reconciler import ReconcilerSettings
from floworch.errors import StepError
from floworch.model.statuses import StepStatus
from floworch.storage.records import ClaimOutcome, SignalOutcome
from floworch.testing.host import FlowTestHost

from .support import flow, manual_engine

SETTINGS = ReconcilerSettings(unsent_grace=timedelta(seconds=1), lost_after=timedelta(seconds=60))


def spy_on_messages(host: FlowTestHost) -> list[str]:
    """Records the id of every message the host's dispatcher is given (it still delivers)."""
    ids: list[str] = []
    dispatcher = host._host.dispatcher
    enqueue, schedule = dispatcher.enqueue, dispatcher.schedule

    async def enqueue_spy(envelopes: Sequence[StepEnvelope]) -> None:
        ids.extend(e.message_id for e in envelopes)
        await enqueue(envelopes)

    async def schedule_spy(envelope: StepEnvelope, at: datetime) -> None:
        ids.append(envelope.message_id)
        await schedule(envelope, at)

    dispatcher.enqueue = enqueue_spy  # type: ignore[method-assign]
    dispatcher.schedule = schedule_spy  # type: ignore[method-assign]
    return ids


async def test_a_retried_foreach_dispatches_its_body_under_new_message_ids() -> None:
    reg = HandlerRegistry()
    declined = {2}

    @reg.handler("Charge")
    async def charge(inputs: Any) -> Any:
        if inputs in declined:
            raise StepError("declined", retryable=False)
        return inputs

    @reg.handler("Ship")
    async def ship(inputs: Any) -> Any:
        return "shipped"

    body = {
        "charge": {"type": "Charge", "inputs": "@item()"},
        "ship": {"type": "Ship", "runAfter": {"charge": ["Succeeded"]}},
    }
    manifest = flow({"each": {"type": "ForEach", "forEach": [1, 2, 3], "steps": body}})
    async with FlowTestHost([manifest], reg) as host:
        ids = spy_on_messages(host)
        run_id = await host.trigger("f")
        first = await host.wait(run_id, timeout=10)
        assert first.status == "Failed"
        first_ids = list(ids)
        declined.clear()
        await host.retry_step(run_id, "each")
        again = await host.wait(run_id, timeout=10)
        steps = await host.store.get_steps(run_id)
    assert again.status == "Succeeded"
    assert again.steps["each"].output == ["shipped"] * 3
    retry_ids = ids[len(first_ids) :]
    assert len(retry_ids) == 1 + 3 + 3  # the loop, three charges, three ships
    assert len(set(ids)) == len(ids), "a message id was used twice"
    seqs = {s.step_key: s.seq for s in steps}
    assert min(seq for key, seq in seqs.items() if key != "each") > 1


async def test_retrying_twice_keeps_message_ids_unique() -> None:
    reg = HandlerRegistry()
    failures = {"left": 2}

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise StepError("not yet", retryable=False)
        return inputs

    body = {"w": {"type": "Work", "inputs": "@item()"}}
    manifest = flow({"each": {"type": "ForEach", "forEach": [1], "steps": body}})
    async with FlowTestHost([manifest], reg) as host:
        ids = spy_on_messages(host)
        run_id = await host.trigger("f")
        for _ in range(2):
            assert (await host.wait(run_id, timeout=10)).status == "Failed"
            await host.retry_step(run_id, "each")
        assert (await host.wait(run_id, timeout=10)).status == "Succeeded"
    assert len(set(ids)) == len(ids) == 6


async def test_a_lost_message_is_dispatched_again_once_per_back_off() -> None:
    reg = HandlerRegistry()
    calls: list[int] = []

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        calls.append(1)
        return "done"

    engine, dispatcher, clock = manual_engine(flow({"s": {"type": "Work"}}), reg)
    result = await engine.trigger("f")
    assert result.run_id is not None
    (lost,) = dispatcher.take()  # sent, but it never reaches a worker
    clock.advance(timedelta(seconds=59))
    assert not (await engine.reconcile(SETTINGS)).anything
    clock.advance(timedelta(seconds=2))
    report = await engine.reconcile(SETTINGS)
    assert (report.redispatched, report.resent) == (1, 0)
    (second,) = dispatcher.take()
    assert second.seq == lost.seq + 1 and second.message_id != lost.message_id
    # Within the back-off the next passes do nothing: no message, no event, no new seq.
    for _ in range(3):
        clock.advance(timedelta(seconds=20))
        assert not (await engine.reconcile(SETTINGS)).anything
    assert dispatcher.take() == []
    # Lost again: the back-off grows with the time the step has waited (61 s, then 122 s).
    clock.advance(timedelta(seconds=1))
    assert (await engine.reconcile(SETTINGS)).redispatched == 1
    (third,) = dispatcher.take()
    assert third.seq == second.seq + 1
    clock.advance(timedelta(seconds=121))
    assert not (await engine.reconcile(SETTINGS)).anything
    clock.advance(timedelta(seconds=2))
    assert (await engine.reconcile(SETTINGS)).redispatched == 1
    (fourth,) = dispatcher.take()
    # The old messages are stale; the newest one runs the handler once.
    for old in (lost, second, third):
        assert await engine.run_step(old) == ClaimOutcome.STALE
    assert await engine.run_step(fourth) == ClaimOutcome.ACQUIRED
    run = await engine.get_run(result.run_id)
    assert run.status == "Succeeded" and calls == [1]
    events = [e.kind for e in await engine.store.list_events(result.run_id)]
    assert events.count("StepRedispatched") == 3
    clock.advance(timedelta(hours=2))
    assert not (await engine.reconcile(SETTINGS)).anything


async def test_the_redispatch_back_off_is_capped() -> None:
    reg = HandlerRegistry()

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        return "done"

    settings = ReconcilerSettings(
        lost_after=timedelta(seconds=60), max_redispatch_backoff=timedelta(seconds=90)
    )
    engine, dispatcher, clock = manual_engine(flow({"s": {"type": "Work"}}), reg)
    await engine.trigger("f")
    dispatcher.take()
    clock.advance(timedelta(hours=5))  # long overdue: the back-off would be 5 hours uncapped
    assert (await engine.reconcile(settings)).redispatched == 1
    clock.advance(timedelta(seconds=89))
    assert not (await engine.reconcile(settings)).anything
    clock.advance(timedelta(seconds=2))
    assert (await engine.reconcile(settings)).redispatched == 1


async def test_a_step_waiting_for_a_signal_is_never_redispatched() -> None:
    reg = HandlerRegistry()

    @reg.handler("After")
    async def after(inputs: Any) -> Any:
        return inputs

    manifest = flow(
        {
            "wait": {"type": "WaitForSignal", "inputs": {"signalName": "go"}},
            "after": {
                "type": "After",
                "inputs": "@steps('wait').output",
                "runAfter": {"wait": ["Succeeded"]},
            },
        }
    )
    engine, dispatcher, clock = manual_engine(manifest, reg)
    result = await engine.trigger("f")
    assert result.run_id is not None
    (envelope,) = dispatcher.take()
    await engine.run_step(envelope)
    assert (await engine.get_run(result.run_id)).steps["wait"].status == StepStatus.WAITING
    events_before = len(await engine.store.list_events(result.run_id))
    for _ in range(5):
        clock.advance(timedelta(minutes=10))
        assert not (await engine.reconcile(SETTINGS)).anything
    assert dispatcher.take() == [] and dispatcher.scheduled == []
    assert len(await engine.store.list_events(result.run_id)) == events_before
    # The payload reaches the step, and a stale copy of its first message does nothing.
    assert await engine.deliver_signal(result.run_id, "go", {"ok": 1}) == SignalOutcome.DELIVERED
    assert await engine.run_step(envelope) == ClaimOutcome.STALE
    (next_step,) = dispatcher.take()
    await engine.run_step(next_step)
    run = await engine.get_run(result.run_id)
    assert run.status == "Succeeded"
    assert run.steps["after"].output == {"ok": 1}


async def test_a_foreach_waiting_for_its_iterations_is_never_redispatched() -> None:
    reg = HandlerRegistry()
    body = {"wait": {"type": "WaitForSignal", "inputs": {"signalName": "go-@{item()}"}}}
    manifest = flow({"each": {"type": "ForEach", "forEach": [1, 2], "steps": body}})
    engine, dispatcher, clock = manual_engine(manifest, reg)
    result = await engine.trigger("f")
    assert result.run_id is not None
    (loop,) = dispatcher.take()
    await engine.run_step(loop)
    for child in dispatcher.take():
        await engine.run_step(child)
    run = await engine.get_run(result.run_id)
    assert {k: s.status for k, s in run.steps.items()} == {
        "each": StepStatus.WAITING,
        "each.0.wait": StepStatus.WAITING,
        "each.1.wait": StepStatus.WAITING,
    }
    for _ in range(3):
        clock.advance(timedelta(minutes=10))
        assert not (await engine.reconcile(SETTINGS)).anything
    assert dispatcher.take() == []
    for item in (1, 2):
        assert await engine.deliver_signal(result.run_id, f"go-{item}") == "Delivered"
    run = await engine.get_run(result.run_id)
    assert run.status == "Succeeded"
