"""One state change of a run, inside the run's transaction.

A :class:`Transition` finishes steps, decides their successors (ready, skipped, blocked), keeps
the scope counters (the run's ``remaining``, each ForEach iteration's count), finishes ForEach
steps and the run, and collects the messages to send once the transaction committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from floworch.engine.core import EngineCore, Send
from floworch.engine.envelope import StepEnvelope
from floworch.engine.planner import Verdict, iteration_output, readiness, scope_status
from floworch.engine.step_errors import ErrorInfo, ErrorType
from floworch.engine.storable import clean_text
from floworch.model import FlowDefinition, StepNode
from floworch.model.instance_key import InstanceKey, descendants_prefix, is_root_key
from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.port import StoreTx
from floworch.storage.records import (
    DispatchRecord,
    EventRecord,
    RunRecord,
    StepRecord,
    step_changes,
)

_ACTIVE = (StepStatus.RUNNING, StepStatus.WAITING, StepStatus.PENDING)
_RUN_ENDED = frozenset(f"Run{status}" for status in RunStatus if status.is_terminal)
"""Kinds of the event that records a run's end (``RunSucceeded``, ``RunCancelled``, ...)."""
_HINTED_JOIN = 8  # joins with at least this many predecessors keep a blocker hint
_MAX_HINTS = 10_000


def rows_to_prefetch(core: EngineCore, flow: FlowDefinition, run_id: str, key: str) -> list[str]:
    """The step rows a transition that finishes step ``key`` reads: the step, its successors
    and their predecessors (of a wide join only the successor and the predecessor its blocker
    hint names, which is all it reads while the hint holds). The completion has the store read
    them with the run's lock (see ``run_transaction``)."""
    prefix, scope = flow.scope_of(key)
    local = InstanceKey.parse(key).step
    wanted = [key]
    for succ in scope.steps[local].successors:
        wanted.append(prefix + succ)
        predecessors = scope.steps[succ].predecessors
        if len(predecessors) < _HINTED_JOIN:
            wanted.extend(prefix + pred for pred in predecessors if pred != local)
        elif (hint := core.join_hints.get((run_id, prefix + succ))) not in (None, local):
            wanted.append(prefix + str(hint))
    return wanted


class Transition:
    """Accumulates the decisions of one transaction over one run."""

    def __init__(
        self, core: EngineCore, tx: StoreTx, flow: FlowDefinition, run: RunRecord, now: datetime
    ) -> None:
        self.core = core
        self.tx = tx
        self.flow = flow
        self.run = run
        self.now = now
        self.sends: list[Send] = []
        self.events: list[EventRecord] = []
        self.run_finished: RunStatus | None = None

    # -- bookkeeping ---------------------------------------------------------------------------

    def event(
        self, kind: str, step_key: str | None = None, message: str = "", data: Any = None
    ) -> None:
        """Appends an event to the run's log (written at :meth:`flush`)."""
        self.events.append(
            EventRecord(self.run.run_id, kind, self.now, step_key, clean_text(message), data)
        )

    async def flush(self) -> None:
        """Writes the collected events; call last, inside the transaction."""
        if self.events:
            await self.tx.append_events(self.events)
            self.core.telemetry.observe_events(self.flow.id, self.events)

    @property
    def _sent_at(self) -> datetime | None:
        """What new ledger rows say about their sending: sent at commit for an in-memory
        hand-off, else unsent until :meth:`EngineCore.send` marks them."""
        return self.now if self.core.in_memory_hand_off else None

    async def after_commit(self) -> None:
        """Sends what the committed transaction recorded and, when it ended the run, wakes the
        run's waiters in this process. Call after the transaction, never inside it."""
        await self.core.send(self.sends, recorded_sent=self.core.in_memory_hand_off)
        if any(e.kind in _RUN_ENDED for e in self.events):
            self.core.run_ends.ended(self.run.run_id)

    @property
    def run_active(self) -> bool:
        """Whether the run still accepts new dispatches."""
        return self.run.status == RunStatus.RUNNING

    # -- dispatch ------------------------------------------------------------------------------

    @property
    def first_seq(self) -> int:
        """The dispatch number of a new step row: after every seq a deleted row of this run
        had, so a recreated step never reuses a message id (``RunRecord.seq_floor``)."""
        return self.run.seq_floor + 1

    async def dispatch_new(self, keys: Sequence[str]) -> None:
        """Creates Pending rows for new step instances and records their first dispatch."""
        if not keys:
            return
        seq = self.first_seq
        rows = [
            StepRecord(
                run_id=self.run.run_id,
                step_key=key,
                step_type=self.flow.node(key).type,
                status=StepStatus.PENDING,
                seq=seq,
                created_at=self.now,
                due_at=self.now,
            )
            for key in keys
        ]
        await self.tx.insert_steps(rows)
        await self.ledger([(row.step_key, row.step_type, seq, self.now) for row in rows])

    async def ledger(self, items: Sequence[tuple[str, str, int, datetime]]) -> None:
        """Records dispatches (key, type, seq, due) and queues the new ones for sending."""
        records = [
            DispatchRecord(self.run.run_id, key, seq, self.flow.id, due, self.now, self._sent_at)
            for key, _, seq, due in items
        ]
        fresh = {(r.step_key, r.seq) for r in await self.tx.record_dispatches(records)}
        for key, step_type, seq, due in items:
            if (key, seq) not in fresh:
                continue
            later = due if due > self.now else None
            self.sends.append((self.envelope(key, step_type, seq, later), later))

    def envelope(
        self, key: str, step_type: str, seq: int, scheduled_at: datetime | None = None
    ) -> StepEnvelope:
        """The message of dispatch ``seq`` of a step of this run."""
        return StepEnvelope(
            flow_id=self.flow.id,
            run_id=self.run.run_id,
            step_key=key,
            step_type=step_type,
            seq=seq,
            flow_version=self.flow.version,
            scheduled_at=scheduled_at,
            trace_context=self.run.trace_context,
        )

    async def redispatch(self, key: str, step_type: str, seq: int, hold_until: datetime) -> None:
        """Records dispatch ``seq`` of a step whose previous message was lost and sends it at
        once; the ledger row is due at ``hold_until``, so the reconciler does not consider
        this message lost before ``hold_until + lost_after`` (its back-off)."""
        record = DispatchRecord(
            self.run.run_id, key, seq, self.flow.id, hold_until, self.now, self._sent_at
        )
        if await self.tx.record_dispatches([record]):
            self.sends.append((self.envelope(key, step_type, seq), None))

    # -- finishing steps -----------------------------------------------------------------------

    async def finish(
        self,
        key: str,
        status: StepStatus,
        *,
        expect_seq: int | None = None,
        expect_statuses: Sequence[StepStatus] | None = None,
        **fields: Any,
    ) -> bool:
        """Moves a step to a terminal status and plans what follows; False if it was stale."""
        changes = step_changes(
            status=status,
            completed_at=self.now,
            lease_owner=None,
            lease_expires_at=None,
            due_at=None,
            **fields,
        )
        updated = await self.tx.update_step(
            self.run.run_id, key, changes, expect_seq=expect_seq, expect_statuses=expect_statuses
        )
        if updated is None:
            return False
        error = ErrorInfo.from_json(fields.get("error"))
        message = error.message if error is not None else ""
        self.event(f"Step{status}", key, message or fields.get("skip_reason") or "")
        await self.propagate([(key, status)])
        return True

    async def propagate(self, finished: list[tuple[str, StepStatus]]) -> None:
        """Plans the successors of newly terminal steps, cascading skips and scope ends."""
        work = list(finished)
        while work:
            key, status = work.pop(0)
            prefix, scope = self.flow.scope_of(key)
            instance = InstanceKey.parse(key)
            local = instance.step
            known: dict[str, StepStatus] = {local: status}
            queue = [local]
            terminal_count = 1
            while queue:
                current = queue.pop(0)
                successors = scope.steps[current].successors
                if not successors:
                    continue
                candidates = [
                    succ
                    for succ in successors
                    if succ not in known and not await self._blocked_by_hint(prefix, succ, known)
                ]
                wanted: set[str] = set()
                for succ in candidates:
                    wanted.add(prefix + succ)
                    wanted.update(
                        prefix + pred
                        for pred in scope.steps[succ].predecessors
                        if pred not in known
                    )
                rows = await self.tx.get_steps(self.run.run_id, wanted) if wanted else {}
                ready: list[str] = []
                for succ in candidates:
                    if prefix + succ in rows:
                        continue  # already decided by an earlier transition
                    node = scope.steps[succ]
                    statuses: dict[str, StepStatus | None] = {}
                    for pred in node.predecessors:
                        row = rows.get(prefix + pred)
                        statuses[pred] = known.get(pred) or (row.status if row else None)
                    verdict = readiness(node, statuses)
                    self._remember_blocker(prefix + succ, node, statuses, verdict.verdict)
                    if verdict.verdict == Verdict.READY:
                        ready.append(prefix + succ)
                    elif verdict.verdict == Verdict.SKIP:
                        await self._insert_skipped(prefix + succ, node, verdict.reason or "")
                        known[succ] = StepStatus.SKIPPED
                        queue.append(succ)
                        terminal_count += 1
                if ready and self.run_active:
                    await self.dispatch_new(ready)
            await self._scope_progress(instance, terminal_count, work)

    async def _blocked_by_hint(self, prefix: str, succ: str, known: dict[str, StepStatus]) -> bool:
        """Whether a wide join is still blocked by the predecessor that blocked it last time.

        Checking one row instead of every predecessor keeps a fan-in of n steps O(n) in total
        rather than O(n^2). The hint is only a guess: a blocked verdict is confirmed by reading
        the hinted row in this transaction, and anything else falls back to the full check.
        """
        hint = self.core.join_hints.get((self.run.run_id, prefix + succ))
        if hint is None or hint in known:
            return False
        row = (await self.tx.get_steps(self.run.run_id, [prefix + hint])).get(prefix + hint)
        return row is None or not StepStatus(row.status).is_terminal

    def _remember_blocker(
        self,
        key: str,
        node: StepNode,
        statuses: dict[str, StepStatus | None],
        verdict: Verdict,
    ) -> None:
        hints = self.core.join_hints
        if verdict != Verdict.BLOCKED:
            hints.pop((self.run.run_id, key), None)
            return
        if len(node.predecessors) < _HINTED_JOIN:
            return
        # The last open predecessor in declaration order is the likeliest to finish last.
        for pred in reversed(list(node.predecessors)):
            status = statuses.get(pred)
            if status is None or not StepStatus(status).is_terminal:
                if len(hints) >= _MAX_HINTS:
                    hints.pop(next(iter(hints)))
                hints[(self.run.run_id, key)] = pred
                return

    async def _insert_skipped(self, key: str, node: StepNode, reason: str) -> None:
        await self.tx.insert_steps(
            [
                StepRecord(
                    run_id=self.run.run_id,
                    step_key=key,
                    step_type=node.type,
                    status=StepStatus.SKIPPED,
                    seq=self.first_seq,
                    skip_reason=f"runAfter not satisfied: {reason}",
                    created_at=self.now,
                    completed_at=self.now,
                )
            ]
        )
        self.event("StepSkipped", key, f"runAfter not satisfied: {reason}")

    # -- scopes: the run and ForEach iterations ------------------------------------------------

    async def _scope_progress(
        self, finished: InstanceKey, count: int, work: list[tuple[str, StepStatus]]
    ) -> None:
        """Counts ``count`` steps of ``finished``'s scope as terminal; ends the scope (the run,
        or one ForEach iteration) when none is left."""
        loop_instance, index = finished.loop, finished.index
        if loop_instance is None or index is None:
            self.run = await self.tx.update_run(self.run.run_id, remaining_delta=-count)
            if self.run.remaining <= 0 and self.run_active:
                await self.finish_run()
            return
        loop_key = str(loop_instance)
        loop = (await self.tx.get_steps(self.run.run_id, [loop_key])).get(loop_key)
        if loop is None or loop.status not in _ACTIVE or not isinstance(loop.state, dict):
            return
        node = self.flow.node(loop_key)
        assert node.body is not None
        state = dict(loop.state)
        active = dict(state["active"])
        left = active.get(str(index), 0) - count
        if left > 0:
            active[str(index)] = left
        else:
            active.pop(str(index), None)
            state["done"] = state["done"] + 1
            if state["next"] < state["total"] and self.run_active:
                await self.start_iteration(loop_key, node, state["next"])
                active[str(state["next"])] = len(node.body.steps)
                state["next"] = state["next"] + 1
        state["active"] = active
        if state["done"] < state["total"]:
            await self.tx.update_step(self.run.run_id, loop_key, step_changes(state=state))
            return
        status, output, error = await self._loop_result(loop_key, node, state)
        done = await self.tx.update_step(
            self.run.run_id,
            loop_key,
            step_changes(
                status=status,
                output=output,
                error=error.to_json() if error else None,
                state=state,
                completed_at=self.now,
            ),
            expect_statuses=_ACTIVE,
        )
        if done is not None:
            self.event(f"Step{status}", loop_key, error.message if error else "")
            work.append((loop_key, status))

    async def start_iteration(self, loop_key: str, node: StepNode, index: int) -> None:
        """Dispatches the entry steps of iteration ``index`` of a ForEach."""
        assert node.body is not None
        loop = InstanceKey.parse(loop_key)
        await self.dispatch_new([str(loop.child(index, entry)) for entry in node.body.entry])

    async def _loop_result(
        self, loop_key: str, node: StepNode, state: dict[str, Any]
    ) -> tuple[StepStatus, Any, ErrorInfo | None]:
        assert node.body is not None
        body = node.body
        loop = InstanceKey.parse(loop_key)
        rows = await self.tx.get_steps_with_prefix(self.run.run_id, descendants_prefix(loop_key))
        per_item: list[dict[str, StepRecord]] = [{} for _ in range(state["total"])]
        for row in rows:
            child = InstanceKey.parse(row.step_key)
            index = child.index
            in_body = child.loop == loop and child.step in body.steps
            if in_body and index is not None and index < len(per_item):
                per_item[index][child.step] = row
        outputs: list[Any] = []
        failures: list[dict[str, Any]] = []
        for index, children in enumerate(per_item):
            statuses = {child: StepStatus(row.status) for child, row in children.items()}
            verdict, unhandled = scope_status(body, statuses)
            outputs.append(iteration_output(body, {c: r.output for c, r in children.items()}))
            if verdict == RunStatus.FAILED:
                failures.append(
                    {"index": index, "errors": {c: children[c].error for c in unhandled}}
                )
        if failures:
            message = f"{len(failures)} of {state['total']} iterations failed"
            return (
                StepStatus.FAILED,
                outputs,
                ErrorInfo.of(ErrorType.FOR_EACH_FAILED, message, items=failures),
            )
        return StepStatus.SUCCEEDED, outputs, None

    async def finish_run(self) -> None:
        """Ends the run with the status its root steps imply."""
        rows = await self.tx.get_steps_with_prefix(self.run.run_id, "")
        statuses = {r.step_key: StepStatus(r.status) for r in rows if is_root_key(r.step_key)}
        status, unhandled = scope_status(self.flow.root, statuses)
        self.run = await self.tx.update_run(self.run.run_id, status=status, completed_at=self.now)
        self.run_finished = status
        detail = f"unhandled failures: {', '.join(unhandled)}" if unhandled else ""
        self.event(f"Run{status}", None, detail)
