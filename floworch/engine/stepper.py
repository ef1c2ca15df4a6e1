"""Executes one step message: claim, inputs, When clauses, the handler or built-in, outcome."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from floworch import limits
from floworch.engine import durations
from floworch.engine.context import Cancellation, StepContext
from floworch.engine.core import EngineCore
from floworch.engine.envelope import StepEnvelope
from floworch.engine.executor import HandlerOutcome
from floworch.engine.expression_context import (
    NO_ITEM,
    StepExpressionContext,
    keys_to_load,
    loop_item,
    scope_chain,
)
from floworch.engine.outcomes import HandlerResultKind, StepOutcome, failed
from floworch.engine.step_errors import ErrorInfo, ErrorType, error_json
from floworch.engine.when import StepWhenTrace, evaluate_when
from floworch.errors import HandlerNotFoundError, StepNotFoundError
from floworch.expressions import ExpressionError
from floworch.model import DELAY, FOR_EACH, WAIT_FOR_SIGNAL, FlowDefinition, StepNode
from floworch.model.instance_key import InstanceKey
from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.records import ClaimOutcome, RunRecord, StepRecord
from floworch.telemetry.logs import LogContext, log_context

log = logging.getLogger("floworch.engine")


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else None
    return None


def _path_value(output: Any, path: str) -> Any:
    current = output
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


class Stepper:
    """Runs step envelopes against the engine core."""

    def __init__(self, core: EngineCore, complete: Any) -> None:
        self.core = core
        self._complete = complete

    async def run(self, envelope: StepEnvelope) -> ClaimOutcome:
        """Claims and executes one dispatch; returns the claim outcome (``acquired`` when run)."""
        core = self.core
        flow = core.flows.get(envelope.flow_id)
        now = core.clock.now()
        claim = await core.store.claim_step(
            envelope.run_id,
            envelope.step_key,
            envelope.seq,
            owner=core.owner,
            lease_until=now + core.lease,
            now=now,
            outputs=_rows_for_inputs(flow, envelope.step_key),
        )
        if not claim.acquired:
            core.telemetry.claim_conflict(flow.id, str(claim.outcome))
            return ClaimOutcome(claim.outcome)
        assert claim.run is not None and claim.step is not None
        run, step = claim.run, claim.step
        if claim.outcome == ClaimOutcome.TAKEN_OVER:
            log.warning("took over %s/%s after its lease lapsed", run.run_id, step.step_key)
        if run.status != RunStatus.RUNNING:
            outcome = StepOutcome(
                StepStatus.CANCELLED,
                error=ErrorInfo(ErrorType.RUN_NOT_ACTIVE, f"run is {run.status}"),
            )
            await self._complete(flow, run.run_id, step, outcome)
            return ClaimOutcome(claim.outcome)
        node = flow.node(step.step_key)
        attributes = {
            "floworch.flow_id": flow.id,
            "floworch.flow_version": flow.version,
            "floworch.run_id": run.run_id,
            "floworch.step_key": step.step_key,
            "floworch.step_type": node.type,
            "floworch.attempt": step.attempt,
            "floworch.seq": step.seq,
        }
        with (
            log_context(attempt=step.attempt, seq=step.seq),
            core.telemetry.step_span(envelope, attributes) as span,
        ):
            due = step.due_at or envelope.scheduled_at
            if due is not None:
                core.telemetry.record_queue_delay(
                    flow.id, step.step_key, (now - due).total_seconds()
                )
            try:
                outcome = await self._execute(flow, run, step, node, now, claim.outputs)
            except RecursionError:
                # Computing the outcome (resolving inputs, converting an output) went too deep:
                # the same data does it again on every try, so it is the step's failure.
                outcome = failed(
                    f"step {step.step_key!r}: a value is nested too deeply to compute its "
                    "inputs or output",
                    error_type=ErrorType.OUTPUT_NOT_STORABLE,
                )
            core.telemetry.finish_span(
                span, str(outcome.status), error_json(outcome.error), outcome.output
            )
            # Inside the span: the messages this outcome dispatches are its children.
            await self._complete(flow, run.run_id, step, outcome)
            elapsed = (core.clock.now() - now).total_seconds()
            core.telemetry.record_step(flow.id, step.step_key, node.type, outcome.status, elapsed)
        return ClaimOutcome(claim.outcome)

    async def _execute(
        self,
        flow: FlowDefinition,
        run: RunRecord,
        step: StepRecord,
        node: StepNode,
        now: datetime,
        rows: dict[str, StepRecord],
    ) -> StepOutcome:
        """Runs the claimed step; ``rows`` are the rows its expressions may read (read with the
        claim)."""
        core = self.core
        if run.timeout_at is not None and now >= run.timeout_at:
            return StepOutcome(
                StepStatus.CANCELLED,
                error=ErrorInfo(ErrorType.RUN_TIMED_OUT, "the run passed its timeout"),
            )
        chain = scope_chain(flow, step.step_key)
        item, index = loop_item(rows, step.step_key)
        if item is NO_ITEM and index is not None:
            item = await _stored_item(core, run.run_id, step.step_key, index)
        ctx = StepExpressionContext(run, rows, chain, now, item=item, index=index)
        # A step's When clauses are decided once, on its first dispatch; later dispatches (a
        # delay or poll waking, a retry) keep that decision and its trace.
        when_trace = StepWhenTrace.from_json(step.when_trace)
        if when_trace is None:
            when_trace = evaluate_when(node, ctx)
            if when_trace is not None and not when_trace.passed:
                return StepOutcome(
                    StepStatus.SKIPPED, when_trace=when_trace, skip_reason=when_trace.skip_reason
                )
        outcome = await self._perform(flow, run, step, node, ctx, item, index, now)
        if when_trace is not None and outcome.when_trace is None:
            outcome = replace(outcome, when_trace=when_trace)
        return outcome

    async def _perform(
        self,
        flow: FlowDefinition,
        run: RunRecord,
        step: StepRecord,
        node: StepNode,
        ctx: StepExpressionContext,
        item: Any,
        index: int | None,
        now: datetime,
    ) -> StepOutcome:
        if node.type == FOR_EACH:
            return self._start_loop(node, ctx)
        try:
            inputs = node.inputs.resolve(ctx)
        except ExpressionError as exc:
            return failed(
                f"inputs could not be resolved: {exc}", error_type=ErrorType.EXPRESSION_ERROR
            )
        try:
            if node.type == WAIT_FOR_SIGNAL:
                return self._wait_for_signal(step, inputs, now)
            if node.type == DELAY:
                return self._delay(step, inputs, now)
        except durations.DurationError as exc:
            return failed(str(exc), error_type=ErrorType.INVALID_DURATION)
        return await self._call_handler(flow, run, step, node, inputs, item, index)

    # -- built-ins -----------------------------------------------------------------------------

    @staticmethod
    def _start_loop(node: StepNode, ctx: StepExpressionContext) -> StepOutcome:
        assert node.for_each is not None
        try:
            items = node.for_each.resolve(ctx)
        except ExpressionError as exc:
            return failed(
                f"forEach items could not be resolved: {exc}", error_type=ErrorType.EXPRESSION_ERROR
            )
        if not isinstance(items, list):
            return failed(
                f"forEach must resolve to a list, got {type(items).__name__}",
                error_type=ErrorType.FOR_EACH_ITEMS,
            )
        if not items:
            return StepOutcome(StepStatus.SUCCEEDED, output=[])
        if len(items) > limits.MAX_FOR_EACH_ITEMS:
            # More would make instance keys (each.<index>.child) longer than validation allowed.
            return failed(
                f"forEach resolved to {len(items)} items; the limit is {limits.MAX_FOR_EACH_ITEMS}",
                error_type=ErrorType.FOR_EACH_ITEMS,
            )
        first = min(node.concurrency_limit, len(items))
        state = {
            "total": len(items),
            "next": first,
            "done": 0,
            "active": {str(i): len(node.body.steps) if node.body else 0 for i in range(first)},
        }
        return StepOutcome(
            StepStatus.WAITING,
            state=state,
            new_children=list(range(first)),
            loop_items=items,
        )

    @staticmethod
    def _wait_for_signal(step: StepRecord, inputs: Any, now: datetime) -> StepOutcome:
        state = step.state if isinstance(step.state, dict) else {}
        deadline = _parse_time(state.get("deadline"))
        if deadline is not None:
            if now >= deadline:
                message = f"no signal {state.get('signal')!r} arrived before {deadline.isoformat()}"
                return StepOutcome(
                    StepStatus.TIMED_OUT, error=ErrorInfo(ErrorType.SIGNAL_TIMEOUT, message)
                )
            return StepOutcome(
                StepStatus.WAITING,
                state=state,
                wake_at=deadline,
                signal=(str(state.get("signal")), deadline),
            )
        if not isinstance(inputs, dict) or not isinstance(inputs.get("signalName"), str):
            return failed("WaitForSignal needs inputs.signalName (a string)")
        name = inputs["signalName"]
        if problem := limits.signal_name_problem(name):
            return failed(problem)
        timeout = inputs.get("timeoutSeconds")
        wake = None
        if timeout:
            wait = durations.seconds_input(timeout, "WaitForSignal inputs.timeoutSeconds")
            wake = durations.after(now, wait, "WaitForSignal inputs.timeoutSeconds")
        new_state: dict[str, Any] = {"signal": name}
        if wake is not None:
            new_state["deadline"] = wake.isoformat()
        return StepOutcome(
            StepStatus.WAITING,
            inputs=inputs,
            state=new_state,
            wake_at=wake,
            signal=(name, wake),
        )

    @staticmethod
    def _delay(step: StepRecord, inputs: Any, now: datetime) -> StepOutcome:
        state = step.state if isinstance(step.state, dict) else {}
        until = _parse_time(state.get("until"))
        if until is None:
            if not isinstance(inputs, dict):
                return failed("Delay needs inputs.delaySeconds or inputs.until")
            if inputs.get("delaySeconds") is not None:
                delay = durations.seconds_input(inputs["delaySeconds"], "Delay inputs.delaySeconds")
                until = durations.after(now, delay, "Delay inputs.delaySeconds")
            else:
                until = _parse_time(inputs.get("until"))
                if until is None:
                    return failed(
                        f"Delay inputs.until {inputs.get('until')!r} is not an ISO 8601 time "
                        "with a time zone"
                    )
        if now >= until:
            return StepOutcome(
                StepStatus.SUCCEEDED, output={"until": until.isoformat()}, inputs=inputs
            )
        return StepOutcome(
            StepStatus.WAITING,
            inputs=inputs,
            state={"until": until.isoformat()},
            wake_at=until,
        )

    # -- handlers ------------------------------------------------------------------------------

    async def _call_handler(
        self,
        flow: FlowDefinition,
        run: RunRecord,
        step: StepRecord,
        node: StepNode,
        inputs: Any,
        item: Any,
        index: int | None,
    ) -> StepOutcome:
        core = self.core
        try:
            handler = core.handlers.get(node.type)
        except HandlerNotFoundError as exc:
            return StepOutcome(
                StepStatus.FAILED,
                error=ErrorInfo(ErrorType.HANDLER_NOT_FOUND, str(exc)),
                inputs=inputs,
            )
        state = step.state if isinstance(step.state, dict) else {}
        token = Cancellation()
        where = LogContext(flow.id, run.run_id, step.step_key, step.attempt, step.seq)
        logger = logging.LoggerAdapter(
            logging.getLogger(f"floworch.step.{node.type}"),
            {
                "run_id": run.run_id,
                "flow_id": flow.id,
                "step_key": step.step_key,
                **where.attributes(),
            },
        )
        ctx = StepContext(
            run_id=run.run_id,
            flow_id=flow.id,
            step_key=step.step_key,
            step_type=node.type,
            attempt=step.attempt,
            idempotency_key=f"{run.run_id}:{step.step_key}",
            attempt_key=f"{run.run_id}:{step.step_key}:{step.seq}",
            trigger_body=run.trigger_body,
            trigger_headers=dict(run.trigger_headers),
            logger=logger,
            cancellation=token,
            item=None if item is NO_ITEM else item,
            index=index,
            poll_count=int(state.get("polls", 0)),
        )
        core.running.setdefault(run.run_id, set()).add(token)
        # Most handlers finish well within one renewal period: start the renewing task only
        # when one does not (a timer handle is much cheaper than a task per step).
        renewer: asyncio.Task[None] | None = None

        def start_renewing() -> None:
            nonlocal renewer
            renewer = asyncio.ensure_future(self._renew(run.run_id, step, token))

        first_renewal = asyncio.get_running_loop().call_later(
            core.renew_every.total_seconds(), start_renewing
        )
        started = core.clock.now()
        try:
            result = await core.executor.run(handler, ctx, inputs, timeout=node.timeout)
        finally:
            first_renewal.cancel()
            if renewer is not None:
                renewer.cancel()
            tokens = core.running.get(run.run_id)
            if tokens is not None:
                tokens.discard(token)
                if not tokens:
                    core.running.pop(run.run_id, None)
        return self._classify(node, step, result, inputs, started)

    def _classify(
        self,
        node: StepNode,
        step: StepRecord,
        result: HandlerOutcome,
        inputs: Any,
        started: datetime,
    ) -> StepOutcome:
        state = dict(step.state) if isinstance(step.state, dict) else {}
        poll = node.spec.poll
        now = self.core.clock.now()
        pending_delay = result.pending_delay
        succeeded = result.kind == HandlerResultKind.SUCCEEDED
        if (
            succeeded
            and poll is not None
            and poll.condition_path
            and _path_value(result.output, poll.condition_path) != poll.condition_equals
        ):
            pending_delay = timedelta(seconds=poll.interval_seconds)
        if result.kind == HandlerResultKind.PENDING or (succeeded and pending_delay is not None):
            polls = int(state.get("polls", 0)) + 1
            first = _parse_time(state.get("pollStarted")) or started
            state.update({"polls": polls, "pollStarted": first.isoformat()})
            if poll is not None and poll.timeout_seconds is not None:
                expired = now - first >= timedelta(seconds=poll.timeout_seconds)
                enough = poll.min_attempts is None or polls >= poll.min_attempts
                if expired and enough:
                    message = (
                        f"polling gave up after {polls} attempts and {poll.timeout_seconds:g}s"
                    )
                    return StepOutcome(
                        StepStatus.TIMED_OUT,
                        output=result.output,
                        error=ErrorInfo(ErrorType.POLL_TIMEOUT, message),
                        inputs=inputs,
                        ran_handler=True,
                    )
            delay = pending_delay or timedelta(
                seconds=poll.interval_seconds if poll is not None else 1.0
            )
            try:
                wake = durations.after(now, durations.checked(delay, "the pending delay"), "it")
            except durations.DurationError as exc:
                return StepOutcome(
                    StepStatus.FAILED,
                    output=result.output,
                    error=ErrorInfo(ErrorType.INVALID_DURATION, f"{node.type}: {exc}"),
                    inputs=inputs,
                    ran_handler=True,
                )
            return StepOutcome(
                StepStatus.WAITING,
                output=result.output,
                inputs=inputs,
                wake_at=wake,
                state=state,
                ran_handler=True,
            )
        return StepOutcome(
            result.kind.step_status,
            output=result.output,
            error=result.error,
            retryable=result.retryable
            and result.kind in (HandlerResultKind.FAILED, HandlerResultKind.TIMED_OUT),
            inputs=inputs,
            ran_handler=True,
        )

    async def _renew(self, run_id: str, step: StepRecord, token: Cancellation) -> None:
        """Keeps the lease alive while the handler runs and notices a cancel from elsewhere."""
        core = self.core
        while True:
            until = core.clock.now() + core.lease
            status = await core.store.renew_lease(
                run_id, step.step_key, step.seq, core.owner, until
            )
            if status is None:
                token.set("the step's lease was lost to another worker")
                return
            if status != RunStatus.RUNNING:
                token.set(f"run is {status}")
                return
            await asyncio.sleep(core.renew_every.total_seconds())


def _rows_for_inputs(flow: FlowDefinition, step_key: str) -> set[str]:
    """The rows a step's expressions may read, which its claim reads too. A key the flow does
    not know reads none: the step then fails after its claim, as any unknown step does."""
    try:
        return keys_to_load(flow, step_key, flow.node(step_key).step_references)
    except StepNotFoundError:
        return set()


async def _stored_item(core: EngineCore, run_id: str, key: str, index: int) -> Any:
    """The item of the ForEach iteration ``key`` belongs to, from the loop's item rows."""
    loop = InstanceKey.parse(key).loop
    stored = await core.store.get_loop_item(run_id, str(loop), index)
    return NO_ITEM if stored is None else stored.value
