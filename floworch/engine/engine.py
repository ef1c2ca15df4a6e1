"""The engine: the runtime-neutral entry point that hosts and runtimes call."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from floworch import limits
from floworch.engine.completion import complete_step
from floworch.engine.core import EngineCore
from floworch.engine.envelope import StepEnvelope
from floworch.engine.flows import FlowRegistry
from floworch.engine.handlers import HandlerRegistry, default_registry
from floworch.engine.outcomes import StepOutcome
from floworch.engine.ports import Clock, Dispatcher, SystemClock
from floworch.engine.reconciler import ReconcileReport, ReconcilerSettings, reconcile
from floworch.engine.step_errors import ErrorInfo, ErrorType
from floworch.engine.stepper import Stepper
from floworch.engine.storable import json_problem
from floworch.engine.transition import Transition
from floworch.engine.views import RunState, build_run_state
from floworch.errors import (
    FlowValidationError,
    InvalidInputError,
    InvalidOperationError,
    RunNotFoundError,
    StepNotFoundError,
    TriggerNotFoundError,
    ValidationIssue,
)
from floworch.model import BUILTIN_STEP_TYPES, FlowDefinition, FlowManifest
from floworch.model.instance_key import InstanceKey, InstanceKeyError, is_inside, is_root_key
from floworch.model.statuses import RunStatus, StepStatus
from floworch.model.triggers import CronTrigger
from floworch.storage.port import Store
from floworch.storage.records import (
    ClaimOutcome,
    FlowRecord,
    RunRecord,
    ScheduleState,
    SignalOutcome,
    StepRecord,
    step_changes,
)
from floworch.telemetry.hooks import Telemetry, TriggerOrigin

_OPEN = (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.WAITING)


@dataclass(frozen=True)
class TriggerResult:
    """The answer of :meth:`Engine.trigger`."""

    run_id: str | None
    duplicate: bool = False
    disabled: bool = False


class Engine:
    """Starts runs, executes step messages, and applies signals, cancels, retries and reruns.

    Args:
        store: where state lives (memory, SQLite, PostgreSQL, SQL Server).
        dispatcher: how step messages travel (in-process queue, Service Bus).
        flows: the flows this engine runs.
        handlers: step handlers by type (default: the registry ``@floworch.handler`` fills).
        clock: time source (tests pass a ManualClock).
        telemetry: OpenTelemetry hooks.
        owner: this worker's name in step leases.
        lease: how long a step claim lives without renewal.
        check_handlers: refuse flows whose step types have no handler.
        in_memory_hand_off: the dispatcher hands messages to workers in this process, so a
            dispatch counts as sent once its transaction commits (no "mark sent" round trip per
            step). A crash loses such messages with the process whichever way they were marked;
            the reconciler dispatches them again once they are overdue
            (:attr:`~floworch.engine.reconciler.ReconcilerSettings.lost_after`).
    """

    def __init__(
        self,
        *,
        store: Store,
        dispatcher: Dispatcher,
        flows: FlowRegistry | Iterable[FlowManifest | FlowDefinition],
        handlers: HandlerRegistry | None = None,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=30),
        check_handlers: bool = True,
        in_memory_hand_off: bool = False,
    ) -> None:
        registry = flows if isinstance(flows, FlowRegistry) else FlowRegistry(flows)
        handler_registry = handlers if handlers is not None else default_registry
        if check_handlers:
            verify_handlers(registry, handler_registry)
        self.core = EngineCore(
            store=store,
            dispatcher=dispatcher,
            clock=clock or SystemClock(),
            flows=registry,
            handlers=handler_registry,
            telemetry=telemetry or Telemetry(),
            lease=lease,
            in_memory_hand_off=in_memory_hand_off,
        )
        if owner:
            self.core.owner = owner
        self._stepper = Stepper(self.core, self._complete)

    @property
    def store(self) -> Store:
        """The store this engine writes to."""
        return self.core.store

    @property
    def flows(self) -> FlowRegistry:
        """The flows this engine runs."""
        return self.core.flows

    @property
    def clock(self) -> Clock:
        """The engine's clock."""
        return self.core.clock

    async def sync_flows(self) -> None:
        """Stores every registered flow.

        Who owns the enabled flag: the manifest's ``enabled`` is the default of a flow stored
        for the first time; an operator's enable/disable (``floworch flows``, the API) then
        overrides it and is kept across restarts. When a manifest's ``enabled`` value differs
        from the one in the stored manifest (someone edited it), the manifest's value applies
        again.
        """
        now = self.clock.now()
        for flow in self.flows:
            stored = await self.store.get_flow(flow.id)
            edited = stored is not None and _manifest_enabled(stored.manifest) != (
                flow.manifest.enabled
            )
            await self.store.upsert_flow(
                FlowRecord(
                    flow.id, flow.version, flow.manifest.to_dict(), flow.manifest.enabled, now
                ),
                keep_enabled=not edited,
            )

    # -- starting runs -------------------------------------------------------------------------

    async def trigger(
        self,
        flow_id: str,
        trigger_key: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        *,
        source_run_id: str | None = None,
        origin: TriggerOrigin | None = None,
    ) -> TriggerResult:
        """Starts a run of a flow.

        Args:
            flow_id: the flow.
            trigger_key: the manifest trigger (default: the flow's first Manual trigger, or
                ``manual`` for a flow that declares none).
            body: the trigger body, any JSON value.
            headers: trigger headers (case-insensitive in expressions).
            idempotency_key: a repeat with the same key returns the first run id.
            origin: who starts the run (HTTP, a message), for the ``flow.trigger`` span's kind
                and the caller's trace context.

        Returns:
            ``run_id``, and ``duplicate`` for a repeated key or ``disabled`` for a disabled flow.

        Raises:
            FlowNotFoundError, TriggerNotFoundError.
            InvalidInputError: the idempotency key breaks :mod:`floworch.limits`, or the body
                or headers cannot be stored (not JSON, larger than
                :data:`~floworch.limits.MAX_STORED_JSON_BYTES`, nested too deeply).
        """
        if idempotency_key is not None:
            _check_input("idempotency key", limits.idempotency_key_problem(idempotency_key))
        _check_input("trigger body", _unstorable("the trigger body", body))
        _check_input("trigger headers", _unstorable("the trigger headers", dict(headers or {})))
        flow = self.flows.get(flow_id)
        key = _trigger_key(flow, trigger_key)
        stored = await self.store.get_flow(flow_id)
        if stored is not None and not stored.enabled:
            return TriggerResult(None, disabled=True)
        with self.core.telemetry.trigger_span(
            flow_id, key, origin, flow_version=flow.version, body=body
        ) as span:
            now = self.clock.now()
            run = RunRecord(
                run_id=uuid.uuid4().hex,
                flow_id=flow.id,
                flow_version=flow.version,
                trigger_key=key,
                status=RunStatus.RUNNING,
                trigger_body=body,
                trigger_headers=dict(headers or {}),
                created_at=now,
                remaining=len(flow.root.steps),
                idempotency_key=idempotency_key,
                source_run_id=source_run_id,
                timeout_at=now + flow.run_timeout if flow.run_timeout else None,
                trace_context=self.core.telemetry.inject(),
            )
            async with self.store.transaction() as tx:
                if idempotency_key is not None:
                    first = await tx.claim_idempotency_key(
                        flow.id, key, idempotency_key, run.run_id, now
                    )
                    if first is not None:
                        return TriggerResult(first, duplicate=True)
                await tx.insert_run(run)
                t = Transition(self.core, tx, flow, run, now)
                t.event("RunStarted", None, f"trigger {key}", {"sourceRunId": source_run_id})
                await t.dispatch_new(list(flow.root.entry))
                await t.flush()
            span.set_attribute("floworch.run_id", run.run_id)
            await t.after_commit()
        return TriggerResult(run.run_id)

    async def rerun(self, run_id: str) -> TriggerResult:
        """Starts a new run from a run's stored trigger data; the new run names its source."""
        run = await self._run(run_id)
        return await self.trigger(
            run.flow_id,
            run.trigger_key,
            run.trigger_body,
            dict(run.trigger_headers),
            source_run_id=run.run_id,
        )

    # -- executing -----------------------------------------------------------------------------

    async def run_step(self, envelope: StepEnvelope) -> ClaimOutcome:
        """Executes one step message. Duplicates and stale messages return without running.

        Returns:
            The claim outcome: ``acquired`` or ``taken_over`` when the step ran, otherwise why not.

        Raises:
            FlowNotFoundError: the envelope names a flow this engine does not know.
            StorageError: the store failed; the message should be redelivered.
        """
        return await self._stepper.run(envelope)

    async def _complete(
        self, flow: FlowDefinition, run_id: str, step: StepRecord, outcome: StepOutcome
    ) -> Transition:
        return await complete_step(self.core, flow, run_id, step, outcome)

    # -- control -------------------------------------------------------------------------------

    async def deliver_signal(
        self, run_id: str, signal_name: str, payload: Any = None
    ) -> SignalOutcome:
        """Delivers a signal to the run's WaitForSignal step named for it.

        Returns:
            ``Delivered`` (the waiting step resumed at once), ``Buffered`` (no step waits yet; the
            first to wait gets it), ``AlreadyDelivered``, or ``NotFound`` for an unknown or
            finished run.

        Raises:
            InvalidInputError: the signal name breaks :mod:`floworch.limits`.
        """
        _check_input("signal name", limits.signal_name_problem(signal_name))
        run = await self.store.get_run(run_id)
        if run is None or run.status != RunStatus.RUNNING:
            return SignalOutcome.NOT_FOUND
        flow = self.flows.get(run.flow_id)
        with self.core.telemetry.signal_span(flow.id, run_id, signal_name, run.trace_context):
            return await self._deliver_signal(flow, run_id, signal_name, payload)

    async def _deliver_signal(
        self, flow: FlowDefinition, run_id: str, signal_name: str, payload: Any
    ) -> SignalOutcome:
        now = self.clock.now()
        async with self.store.run_transaction(run_id) as tx:
            current = await tx.get_run(run_id)
            if current is None or current.status != RunStatus.RUNNING:
                return SignalOutcome.NOT_FOUND
            outcome, step_key = await tx.deliver_signal(run_id, signal_name, payload, now)
            t = Transition(self.core, tx, flow, current, now)
            if outcome == SignalOutcome.DELIVERED and step_key is not None:
                waiting = (await tx.get_steps(run_id, [step_key])).get(step_key)
                if waiting is not None and waiting.started_at is not None:
                    waited = (now - waiting.started_at).total_seconds()
                    self.core.telemetry.signal_waited(flow.id, step_key, waited)
                t.event("SignalDelivered", step_key, f"signal {signal_name!r}")
                await t.finish(
                    step_key,
                    StepStatus.SUCCEEDED,
                    expect_statuses=(StepStatus.WAITING, StepStatus.RUNNING),
                    output=payload,
                )
            elif outcome == SignalOutcome.BUFFERED:
                t.event("SignalBuffered", None, f"signal {signal_name!r} buffered")
            await t.flush()
        await t.after_commit()
        return SignalOutcome(outcome)

    async def cancel_run(self, run_id: str, reason: str = "cancelled by request") -> bool:
        """Cancels a running run: open steps become Cancelled, running handlers are told, and
        nothing more is dispatched. False when the run had already finished."""
        return await self._stop_run(run_id, RunStatus.CANCELLED, reason)

    async def time_out_run(self, run_id: str) -> bool:
        """Ends a run that passed its timeout (the reconciler calls this)."""
        return await self._stop_run(run_id, RunStatus.TIMED_OUT, "the run passed its timeout")

    async def _stop_run(self, run_id: str, status: RunStatus, reason: str) -> bool:
        await self._run(run_id)
        now = self.clock.now()
        async with self.store.run_transaction(run_id) as tx:
            run = await tx.get_run(run_id)
            if run is None or run.status != RunStatus.RUNNING:
                return False
            steps = await tx.get_steps_with_prefix(run_id, "")
            # The open root steps end here (Cancelled), so they no longer count as remaining:
            # a later retry_step of one of them adds it back.
            ending = sum(1 for s in steps if s.status in _OPEN and is_root_key(s.step_key))
            await tx.update_run(
                run_id,
                status=status,
                completed_at=now,
                cancel_reason=reason,
                remaining_delta=-ending,
            )
            error = ErrorInfo(
                ErrorType.RUN_CANCELLED
                if status == RunStatus.CANCELLED
                else ErrorType.RUN_TIMED_OUT,
                reason,
            ).to_json()
            for step in steps:
                if step.status in _OPEN:
                    await tx.update_step(
                        run_id,
                        step.step_key,
                        step_changes(
                            status=StepStatus.CANCELLED,
                            completed_at=now,
                            error=error,
                            lease_owner=None,
                            lease_expires_at=None,
                            due_at=None,
                        ),
                        expect_statuses=_OPEN,
                    )
                    await tx.remove_waiter(run_id, step.step_key)
            t = Transition(self.core, tx, self.flows.get(run.flow_id), run, now)
            t.event(f"Run{status}", None, reason)
            await t.flush()
        await t.after_commit()
        self.core.cancel_local(run_id, reason)
        return True

    async def retry_step(self, run_id: str, step_key: str) -> None:
        """Runs a failed, timed-out or cancelled top-level step again as a new attempt.

        The steps downstream that were skipped because of it are reset too, so they are planned
        again; a finished run becomes Running. Outputs of other steps are kept, and so is the
        step's own When decision (its clauses were decided when it first ran).

        Raises:
            RunNotFoundError, StepNotFoundError, InvalidOperationError.
        """
        run = await self._run(run_id)
        flow = self.flows.get(run.flow_id)
        try:
            instance = InstanceKey.parse(step_key)
        except InstanceKeyError:
            raise StepNotFoundError(run_id, step_key) from None
        if not instance.is_root:
            raise InvalidOperationError(
                f"retry {step_key!r}: retry the ForEach step that contains it instead "
                f"({instance.top!r}); its whole loop runs again"
            )
        if step_key not in flow.root.steps:
            raise StepNotFoundError(run_id, step_key)
        now = self.clock.now()
        async with self.store.run_transaction(run_id) as tx:
            current = await tx.get_run(run_id)
            assert current is not None
            rows = {s.step_key: s for s in await tx.get_steps_with_prefix(run_id, "")}
            step = rows.get(step_key)
            retryable = (StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.CANCELLED)
            if step is None or step.status not in retryable:
                status = step.status if step else "not started"
                raise InvalidOperationError(
                    f"step {step_key!r} of run {run_id} is {status}; only Failed, TimedOut or "
                    "Cancelled steps can be retried"
                )
            reset = _skipped_downstream(flow, step_key, rows)
            children = [k for k in rows if is_inside(k, step_key)]
            await tx.delete_steps(run_id, [*reset, *children])
            await tx.remove_waiter(run_id, step_key)
            await tx.update_step(
                run_id,
                step_key,
                step_changes(
                    status=StepStatus.PENDING,
                    seq=step.seq + 1,
                    attempt=step.attempt + 1,
                    error=None,
                    output=None,
                    completed_at=None,
                    started_at=None,
                    state=None,
                    due_at=now,
                    skip_reason=None,
                ),
            )
            reopened = current.status != RunStatus.RUNNING
            # The deleted rows are created again later; their new seqs must come after every
            # seq they had, or the new messages reuse the old ids (and Service Bus drops them).
            floor = max([current.seq_floor, *(rows[k].seq for k in (*reset, *children))])
            current = await tx.update_run(
                run_id,
                status=RunStatus.RUNNING if reopened else None,
                remaining_delta=1 + sum(1 for k in reset if is_root_key(k)),
                clear_completed=reopened,
                seq_floor=floor if floor > current.seq_floor else None,
            )
            t = Transition(self.core, tx, flow, current, now)
            await t.ledger([(step_key, step.step_type, step.seq + 1, now)])
            t.event("StepRetried", step_key, f"manual retry, attempt {step.attempt + 1}")
            await t.flush()
        await t.after_commit()

    # -- flows and schedules -------------------------------------------------------------------

    async def set_flow_enabled(self, flow_id: str, enabled: bool) -> None:
        """Enables or disables a flow (a disabled flow starts no runs; running ones finish)."""
        flow = self.flows.get(flow_id)
        now = self.clock.now()
        if not await self.store.set_flow_enabled(flow_id, enabled, now):
            await self.store.upsert_flow(
                FlowRecord(flow.id, flow.version, flow.manifest.to_dict(), enabled, now),
                keep_enabled=False,
            )

    async def fire_schedule(
        self, flow_id: str, trigger_key: str, fire_time: datetime
    ) -> TriggerResult | None:
        """Starts the run of one cron fire time, exactly once per (flow, trigger, fire time).

        Returns None when the trigger is paused or this fire time already started a run.
        """
        flow = self.flows.get(flow_id)
        trigger = flow.triggers.get(trigger_key)
        if not isinstance(trigger, CronTrigger):
            raise TriggerNotFoundError(flow_id, trigger_key, list(flow.triggers))
        with self.core.telemetry.cron_span(flow_id, trigger_key, fire_time) as span:
            result = await self._fire_schedule(flow_id, trigger_key, trigger, fire_time)
            if result is not None and result.run_id is not None and not result.duplicate:
                span.set_attribute("floworch.run_id", result.run_id)
                lag = (self.clock.now() - fire_time).total_seconds()
                self.core.telemetry.cron_fired(flow_id, trigger_key, lag)
        return result

    async def _fire_schedule(
        self, flow_id: str, trigger_key: str, trigger: CronTrigger, fire_time: datetime
    ) -> TriggerResult | None:
        async with self.store.transaction() as tx:
            state = await tx.get_schedule_state(flow_id, trigger_key) or ScheduleState(
                flow_id, trigger_key
            )
            if state.paused:
                return None
            if not await tx.record_cron_fire(flow_id, trigger_key, fire_time, None):
                return None
            if state.last_fire_at is None or fire_time > state.last_fire_at:
                state = replace(state, last_fire_at=fire_time, updated_at=self.clock.now())
                await tx.put_schedule_state(state)
        return await self.trigger(
            flow_id,
            trigger_key,
            trigger.body,
            {"X-Floworch-Fire-Time": fire_time.isoformat()},
            idempotency_key=f"cron:{fire_time.isoformat()}",
        )

    async def set_schedule(
        self,
        flow_id: str,
        trigger_key: str,
        *,
        paused: bool | None = None,
        cron_override: str | None = None,
        clear_override: bool = False,
    ) -> ScheduleState:
        """Pauses, resumes or overrides a cron trigger; stored so every replica obeys it."""
        from floworch.model import cron_problem

        flow = self.flows.get(flow_id)
        if not isinstance(flow.triggers.get(trigger_key), CronTrigger):
            raise TriggerNotFoundError(flow_id, trigger_key, list(flow.triggers))
        if cron_override is not None and (problem := cron_problem(cron_override)):
            raise FlowValidationError([ValidationIssue("cron", problem)])
        async with self.store.transaction() as tx:
            state = await tx.get_schedule_state(flow_id, trigger_key) or ScheduleState(
                flow_id, trigger_key
            )
            override = None if clear_override else (cron_override or state.cron_override)
            new = replace(
                state,
                paused=state.paused if paused is None else paused,
                cron_override=override,
                updated_at=self.clock.now(),
            )
            if override != state.cron_override:
                # The pending tick belongs to the old expression: a cron hub seeing no next fire
                # seeds the new chain (old ticks are dropped on arrival; see runtime cron.py).
                new = replace(new, next_fire_at=None)
            await tx.put_schedule_state(new)
        return new

    # -- reading -------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunState:
        """A run with its steps.

        Raises:
            RunNotFoundError: no such run.
        """
        run = await self._run(run_id)
        return build_run_state(run, await self.store.get_steps(run_id))

    @property
    def default_poll_interval(self) -> float:
        """How often :meth:`wait_for_run` reads the run when not told (seconds)."""
        return _IN_PROCESS_POLL if self.core.in_memory_hand_off else _POLL

    async def wait_for_run(
        self,
        run_id: str,
        *,
        timeout: float = 60.0,
        poll_interval: float | None = None,
    ) -> RunState:
        """Waits until the run is terminal and returns it.

        An end of the run in this process wakes the waiter at once; the poll (every
        ``poll_interval`` seconds) finds ends in other processes. By default it polls every
        20 ms, or every 0.5 s when this engine hands its dispatches to workers in this process
        (:attr:`default_poll_interval`), where runs it started end here.

        Raises:
            TimeoutError: it did not finish within ``timeout`` seconds (real time).
        """
        poll = self.default_poll_interval if poll_interval is None else poll_interval
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ended = self.core.run_ends.watch(run_id)
        try:
            while True:
                ended.clear()  # before the look: an end committed after it sets it again
                run = await self._run(run_id)
                if RunStatus(run.status).is_terminal:
                    return build_run_state(run, await self.store.get_steps(run_id))
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"run {run_id} is still {run.status} after {timeout:g}s")
                # Woken when the run ends in this process; the poll finds ends elsewhere.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), min(poll, left))
        finally:
            self.core.run_ends.unwatch(run_id, ended)

    async def reconcile(self, settings: ReconcilerSettings | None = None) -> ReconcileReport:
        """One reconciler pass: re-send lost or unsent dispatches, take over steps whose worker
        died, time out overdue runs."""
        return await reconcile(self.core, self.time_out_run, settings)

    async def _run(self, run_id: str) -> RunRecord:
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        return run


_POLL = 0.02
_IN_PROCESS_POLL = 0.5


def _manifest_enabled(manifest: Any) -> bool:
    """The ``enabled`` value of a stored manifest (``true`` when absent, as in the model)."""
    if isinstance(manifest, Mapping):
        return bool(manifest.get("enabled", True))
    return True


def _trigger_key(flow: FlowDefinition, trigger_key: str | None) -> str:
    if trigger_key is not None:
        if trigger_key not in flow.triggers and not (trigger_key == "manual" and not flow.triggers):
            raise TriggerNotFoundError(flow.id, trigger_key, list(flow.triggers))
        return trigger_key
    for key, trigger in flow.triggers.items():
        if trigger.type == "Manual":
            return key
    if not flow.triggers:
        return "manual"
    return next(iter(flow.triggers))


def _skipped_downstream(
    flow: FlowDefinition, step_key: str, rows: Mapping[str, StepRecord]
) -> list[str]:
    """Top-level steps reachable from ``step_key`` that were skipped (to plan them again)."""
    found: list[str] = []
    queue = list(flow.root.steps[step_key].successors)
    seen: set[str] = set()
    while queue:
        key = queue.pop(0)
        if key in seen:
            continue
        seen.add(key)
        row = rows.get(key)
        if row is not None and row.status == StepStatus.SKIPPED:
            found.append(key)
            found.extend(k for k in rows if is_inside(k, key))
            queue.extend(flow.root.steps[key].successors)
    return found


def verify_handlers(flows: FlowRegistry, handlers: HandlerRegistry) -> None:
    issues: list[ValidationIssue] = []
    known = sorted(set(handlers.types()) | BUILTIN_STEP_TYPES)

    def walk(flow_id: str, steps: Mapping[str, Any], path: str) -> None:
        for key, node in steps.items():
            if node.type not in BUILTIN_STEP_TYPES and node.type not in handlers:
                issues.append(
                    ValidationIssue(
                        f"{flow_id}: {path}{key}.type",
                        f"no handler registered for step type {node.type!r} "
                        f"(registered: {', '.join(known)})",
                    )
                )
            if node.body is not None:
                walk(flow_id, node.body.steps, f"{path}{key}.steps.")

    for flow in flows:
        walk(flow.id, flow.root.steps, "steps.")
    if issues:
        raise FlowValidationError(issues)


def _unstorable(what: str, value: Any) -> str | None:
    problem = json_problem(value)
    return None if problem is None else f"{what} cannot be stored: {problem}"


def _check_input(field: str, problem: str | None) -> None:
    if problem is not None:
        raise InvalidInputError(field, problem)
