"""The store port: what the engine needs from persistence, as typing Protocols.

The engine drives state changes through short transactions. ``Store.transaction()`` opens one;
``Store.run_transaction(run_id)`` opens one and first takes the run's lock (a write to the run
row), so every state change of one run that depends on other steps' states is serialised: two
predecessors finishing at once can never both miss that their successor became ready. Each
adapter (memory, SQL) implements every method with the same semantics; the shared suite in
``floworch.testing.store_contract`` proves it.

A step transition on the hot path is three store calls: ``claim_step`` (claim + mark running +
read the run), the completion transaction (result + successors + ledger rows), and
``mark_dispatched`` after the messages went out (none for an in-memory hand-off). How many
database round trips each costs is the adapter's business (see docs/storage.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from floworch.model.statuses import RunStatus
from floworch.storage.records import (
    JSON,
    AttemptRecord,
    ClaimResult,
    DispatchRecord,
    EventRecord,
    FlowRecord,
    LoopItem,
    RunQuery,
    RunRecord,
    ScheduleState,
    SignalWaiter,
    StepChanges,
    StepRecord,
)


class StoreTx(Protocol):
    """Operations inside one transaction. Nothing is visible to others until it commits.

    Leaving the ``async with`` block normally commits; an exception rolls back.
    """

    # -- runs ---------------------------------------------------------------------------------

    async def insert_run(self, run: RunRecord) -> None:
        """Inserts a new run. The run id must be new."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Reads a run (inside the transaction, so it sees this transaction's writes)."""

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | None = None,
        remaining_delta: int = 0,
        completed_at: datetime | None = None,
        cancel_reason: str | None = None,
        clear_completed: bool = False,
        seq_floor: int | None = None,
    ) -> RunRecord:
        """Changes a run and returns it as it now is. ``remaining_delta`` is added atomically;
        ``seq_floor`` is written as given (the engine only ever raises it).

        Raises:
            RunNotFoundError: no such run.
        """

    # -- idempotency ---------------------------------------------------------------------------

    async def claim_idempotency_key(
        self, flow_id: str, trigger_key: str, key: str, run_id: str, now: datetime
    ) -> str | None:
        """Registers ``key`` for ``run_id`` once. Returns None when this call registered it, or the
        run id that registered it first. Never raises on a duplicate, even under a race."""

    # -- steps ---------------------------------------------------------------------------------

    async def insert_steps(self, steps: Sequence[StepRecord]) -> None:
        """Inserts new step rows (one batch). Keys must be new for their run."""

    async def get_steps(self, run_id: str, keys: Collection[str]) -> dict[str, StepRecord]:
        """Reads the given step rows of a run; keys with no row are absent from the result."""

    async def get_steps_with_prefix(self, run_id: str, prefix: str) -> list[StepRecord]:
        """Reads every step row whose key starts with ``prefix`` ("" = all steps of the run)."""

    async def update_step(
        self,
        run_id: str,
        step_key: str,
        changes: StepChanges,
        *,
        expect_seq: int | None = None,
        expect_statuses: Collection[str] | None = None,
    ) -> StepRecord | None:
        """Writes ``changes`` to one step if it matches the expectations; returns the new row, or
        None when the row is missing or did not match (a stale writer: write nothing)."""

    async def delete_steps(self, run_id: str, keys: Collection[str]) -> None:
        """Deletes step rows (with their claims, waiters and loop items); used by a manual
        retry."""

    async def insert_attempt(self, attempt: AttemptRecord) -> None:
        """Appends a finished attempt to the step's history."""

    async def put_loop_items(self, run_id: str, step_key: str, items: Sequence[JSON]) -> None:
        """Stores a ForEach step's items (item ``i`` at index ``i``), replacing any it had.
        ``delete_steps`` of the step deletes them too."""

    # -- dispatch ledger -----------------------------------------------------------------------

    async def record_dispatches(self, dispatches: Sequence[DispatchRecord]) -> list[DispatchRecord]:
        """Insert-once per (run, step, seq). Returns the rows that were new (the ones to send)."""

    # -- signals -------------------------------------------------------------------------------

    async def register_waiter(self, waiter: SignalWaiter) -> JSON | None:
        """Parks a step on a signal. If a buffered signal of that name is waiting, consumes it
        and returns ``{"payload": ...}`` instead of parking; otherwise returns None."""

    async def deliver_signal(
        self, run_id: str, signal_name: str, payload: JSON, now: datetime
    ) -> tuple[str, str | None]:
        """Delivers a signal: ``("Delivered", step_key)`` to an undelivered waiter (conditional
        update, checked by row count), ``("Buffered", None)`` when no step waits yet,
        ``("AlreadyDelivered", key or None)`` when a payload is already recorded for that name."""

    async def remove_waiter(self, run_id: str, step_key: str) -> None:
        """Removes a step's waiter (timed out, cancelled, or reset by a retry)."""

    # -- events --------------------------------------------------------------------------------

    async def append_events(self, events: Sequence[EventRecord]) -> None:
        """Appends to run event logs (one batch)."""

    # -- schedules -----------------------------------------------------------------------------

    async def get_schedule_state(self, flow_id: str, trigger_key: str) -> ScheduleState | None:
        """Reads one cron trigger's state and locks it until commit where the database can
        (``FOR UPDATE``; SQLite's write transaction already excludes other writers), so a
        read-modify-write never loses a concurrent pause or override."""

    async def put_schedule_state(self, state: ScheduleState) -> None:
        """Creates or replaces the schedule state of one cron trigger."""

    async def record_cron_fire(
        self, flow_id: str, trigger_key: str, fire_time: datetime, run_id: str | None
    ) -> bool:
        """Insert-once per (flow, trigger, fire time): True when this call recorded the fire."""


class Store(Protocol):
    """The persistence port. Reads outside a transaction see committed state."""

    def transaction(self) -> AbstractAsyncContextManager[StoreTx]:
        """Opens a transaction."""

    def run_transaction(
        self, run_id: str, *, steps: Collection[str] = ()
    ) -> AbstractAsyncContextManager[StoreTx]:
        """Opens a transaction holding the lock of ``run_id`` until it ends.

        ``steps`` names step rows of the run the caller is about to read or change: a store
        may read them together with the lock (one round trip instead of several). It changes
        no answer: ``get_steps`` and ``update_step`` behave as without it.

        Raises:
            RunNotFoundError: the run does not exist.
        """

    async def close(self) -> None:
        """Releases connections."""

    # -- flows ---------------------------------------------------------------------------------

    async def upsert_flow(self, flow: FlowRecord, *, keep_enabled: bool = True) -> FlowRecord:
        """Stores a flow definition. With ``keep_enabled`` an existing row keeps its enabled flag
        (so a restart does not re-enable a flow an operator disabled). Returns the stored row."""

    async def get_flow(self, flow_id: str) -> FlowRecord | None:
        """Reads one flow."""

    async def list_flows(self) -> list[FlowRecord]:
        """Lists every stored flow, by id."""

    async def set_flow_enabled(self, flow_id: str, enabled: bool, now: datetime) -> bool:
        """Enables or disables a flow; False when no such flow is stored."""

    # -- the claim (its own short transaction) -------------------------------------------------

    async def claim_step(
        self,
        run_id: str,
        step_key: str,
        seq: int,
        *,
        owner: str,
        lease_until: datetime,
        now: datetime,
        outputs: Collection[str] = (),
    ) -> ClaimResult:
        """Atomically claims dispatch ``seq`` of a step and marks it Running.

        ``outputs`` names step rows of the run to read once the claim is acquired (what the
        step's inputs refer to): they come back in ``ClaimResult.outputs``, as
        :meth:`get_outputs` would return them, in the claim's round trip where the database
        allows.

        Outcomes: ``acquired`` (the step was Pending or Waiting with this seq: it is now Running
        with the caller's lease); ``taken_over`` (it was Running under a lease that lapsed
        before ``now``);
        ``already_claimed`` (another owner holds a live lease); ``stale`` (the step is terminal,
        waiting, or at another seq: the message is a duplicate or outdated); ``run_not_found``.
        The run record is returned for acquired/taken_over. Concurrent claimers of one dispatch
        get exactly one acquired, and none of them sees a driver error.
        """

    async def renew_lease(
        self, run_id: str, step_key: str, seq: int, owner: str, lease_until: datetime
    ) -> RunStatus | None:
        """Extends the caller's lease; returns the run's status (to notice a cancel or timeout),
        or None when the caller no longer holds the lease."""

    async def mark_dispatched(
        self, keys: Sequence[tuple[str, str, int]], sent_at: datetime
    ) -> None:
        """Marks ledger rows (run id, step key, seq) as sent, in one statement."""

    # -- reads ---------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Reads a run."""

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Lists runs newest first, filtered and paged."""

    async def count_runs(self, query: RunQuery) -> int:
        """Counts the runs matching a query (paging ignored)."""

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        """Every step row of a run, in creation order."""

    async def get_attempts(self, run_id: str, step_key: str | None = None) -> list[AttemptRecord]:
        """Attempt history of a run (or of one step), oldest first."""

    async def get_outputs(self, run_id: str, keys: Collection[str]) -> dict[str, StepRecord]:
        """Reads the given step rows (for resolving ``@steps('k')`` expressions)."""

    async def get_loop_item(self, run_id: str, step_key: str, index: int) -> LoopItem | None:
        """Item ``index`` of a ForEach step, or None when the step stored none there."""

    async def list_events(
        self, run_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[EventRecord]:
        """The run's event log in order, from after ``after_id``."""

    async def list_waiters(self, run_id: str) -> list[SignalWaiter]:
        """The signal waiters of a run."""

    async def get_schedule_state(self, flow_id: str, trigger_key: str) -> ScheduleState | None:
        """Reads one cron trigger's state."""

    async def list_schedule_states(self) -> list[ScheduleState]:
        """Every stored cron trigger state."""

    # -- reconciler scans (bounded by ``limit``; each uses an index) ----------------------------

    async def due_dispatches(
        self,
        now: datetime,
        *,
        unsent_grace_until: datetime,
        sent_stuck_before: datetime,
        limit: int,
    ) -> list[DispatchRecord]:
        """Ledger rows to (re)send: unsent rows due before ``unsent_grace_until``, and sent rows due
        before ``sent_stuck_before`` whose step is still Pending or Waiting at that seq (the message
        was lost: the reference engine once lost a rescheduled polling message this way)."""

    async def expired_leases(self, now: datetime, *, limit: int) -> list[StepRecord]:
        """Running steps whose lease lapsed before ``now`` (their worker died)."""

    async def runs_past_timeout(self, now: datetime, *, limit: int) -> list[RunRecord]:
        """Running runs whose ``timeout_at`` passed."""

    async def unfinished_runs(self, *, limit: int, after_run_id: str = "") -> list[RunRecord]:
        """Running runs ordered by run id, paged by ``after_run_id`` (for resume)."""

    # -- retention -----------------------------------------------------------------------------

    async def prune_runs(self, completed_before: datetime, *, batch_size: int) -> int:
        """Deletes up to ``batch_size`` finished runs completed before the cut-off, with their
        steps, attempts, ledger rows, waiters, signals and events; returns how many runs."""


__all__ = ["Store", "StoreTx"]
