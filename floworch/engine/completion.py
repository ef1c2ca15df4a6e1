"""Persists a step outcome: retry scheduling, parking, finishing, in the run's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from floworch.engine.core import EngineCore
from floworch.engine.outcomes import StepOutcome
from floworch.engine.step_errors import error_json
from floworch.engine.storable import storable_outcome
from floworch.engine.transition import Transition, rows_to_prefetch
from floworch.model import WAIT_FOR_SIGNAL, FlowDefinition, StepNode
from floworch.model.statuses import StepStatus
from floworch.storage.port import StoreTx
from floworch.storage.records import AttemptRecord, SignalWaiter, StepRecord, step_changes

_RUNNING = (StepStatus.RUNNING,)


def should_retry(node: StepNode, step: StepRecord, outcome: StepOutcome) -> bool:
    """Whether the step's retry policy allows another attempt after this failure."""
    policy = node.retry
    if policy is None or not outcome.retryable or step.attempt >= policy.max_attempts:
        return False
    if policy.retry_on:
        return outcome.error is not None and outcome.error.type in policy.retry_on
    return True


async def complete_step(
    core: EngineCore, flow: FlowDefinition, run_id: str, step: StepRecord, outcome: StepOutcome
) -> Transition:
    """Writes ``outcome`` for the claimed dispatch ``step`` and plans what follows.

    Returns the transition (its messages were already sent).
    """
    outcome = storable_outcome(outcome, step.step_key)
    now = core.clock.now()
    node = flow.node(step.step_key)
    key, seq = step.step_key, step.seq
    # The When trace is written when this execution decided it, and never erased afterwards.
    trace = _trace_of(outcome)
    ahead = rows_to_prefetch(core, flow, run_id, key)
    async with core.store.run_transaction(run_id, steps=ahead) as tx:
        run = await tx.get_run(run_id)
        assert run is not None
        t = Transition(core, tx, flow, run, now)
        status = outcome.status
        if (
            status in (StepStatus.FAILED, StepStatus.TIMED_OUT)
            and t.run_active
            and should_retry(node, step, outcome)
        ):
            assert node.retry is not None
            due = now + node.retry.delay_before(step.attempt + 1)
            updated = await tx.update_step(
                run_id,
                key,
                step_changes(
                    status=StepStatus.WAITING,
                    seq=seq + 1,
                    attempt=step.attempt + 1,
                    error=error_json(outcome.error),
                    output=outcome.output,
                    inputs=outcome.inputs,
                    due_at=due,
                    lease_owner=None,
                    lease_expires_at=None,
                    state=None,
                    **trace,
                ),
                expect_seq=seq,
                expect_statuses=_RUNNING,
            )
            if updated is not None:
                await _record_attempt(tx, step, outcome, now)
                await t.ledger([(key, node.type, seq + 1, due)])
                t.event(
                    "StepRetryScheduled",
                    key,
                    outcome.error.message if outcome.error else "",
                    {"attempt": step.attempt + 1, "at": due.isoformat()},
                )
        elif status == StepStatus.WAITING:
            await _park(t, node, step, outcome)
        else:
            if node.type == WAIT_FOR_SIGNAL:
                await tx.remove_waiter(run_id, key)
            finished = await t.finish(
                key,
                status,
                expect_seq=seq,
                expect_statuses=_RUNNING,
                output=outcome.output,
                error=error_json(outcome.error),
                inputs=outcome.inputs,
                skip_reason=outcome.skip_reason,
                **trace,
            )
            if finished and outcome.ran_handler:
                await _record_attempt(tx, step, outcome, now)
        await t.flush()
    await t.after_commit()
    return t


async def _park(t: Transition, node: StepNode, step: StepRecord, outcome: StepOutcome) -> None:
    run_id, key, seq = t.run.run_id, step.step_key, step.seq
    if outcome.signal is not None:
        name, expires = outcome.signal
        buffered = await t.tx.register_waiter(SignalWaiter(run_id, key, name, t.now, expires))
        if buffered is not None:
            await t.finish(
                key,
                StepStatus.SUCCEEDED,
                expect_seq=seq,
                expect_statuses=_RUNNING,
                output=buffered["payload"],
                inputs=outcome.inputs,
                **_trace_of(outcome),
            )
            return
    # Parking always moves to a new seq. A step with a wake time gets a ledger row (and a message)
    # for it; one that only waits (for a signal, or for its ForEach iterations) gets none, so
    # no ledger row matches its seq and the reconciler never takes it for a lost message.
    new_seq = seq + 1
    changes: dict[str, Any] = {
        "status": StepStatus.WAITING,
        "seq": new_seq,
        "state": outcome.state,
        "due_at": outcome.wake_at,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if outcome.inputs is not None:
        changes["inputs"] = outcome.inputs
    if outcome.when_trace is not None:
        changes["when_trace"] = outcome.when_trace.to_json()
    if outcome.ran_handler:
        changes["output"] = outcome.output
    updated = await t.tx.update_step(
        run_id, key, step_changes(**changes), expect_seq=seq, expect_statuses=_RUNNING
    )
    if updated is None:
        return
    if outcome.wake_at is not None:
        await t.ledger([(key, node.type, new_seq, outcome.wake_at)])
    if outcome.loop_items is not None:
        await t.tx.put_loop_items(run_id, key, outcome.loop_items)
    for index in outcome.new_children:
        await t.start_iteration(key, node, index)
    if outcome.ran_handler:
        t.event("StepPolling", key, f"polling again at {outcome.wake_at}")
    elif outcome.signal is not None:
        t.event("StepWaitingForSignal", key, f"waiting for signal {outcome.signal[0]!r}")
    elif outcome.new_children:
        t.event("ForEachStarted", key, f"{outcome.state['total']} items")
    else:
        t.event("StepWaiting", key, f"until {outcome.wake_at}")


def _trace_of(outcome: StepOutcome) -> dict[str, Any]:
    return {"when_trace": outcome.when_trace.to_json()} if outcome.when_trace else {}


async def _record_attempt(
    tx: StoreTx, step: StepRecord, outcome: StepOutcome, now: datetime
) -> None:
    await tx.insert_attempt(
        AttemptRecord(
            run_id=step.run_id,
            step_key=step.step_key,
            attempt=step.attempt,
            seq=step.seq,
            status=outcome.status,
            started_at=step.started_at,
            completed_at=now,
            output=outcome.output,
            error=error_json(outcome.error),
        )
    )
