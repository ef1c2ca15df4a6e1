"""The shared contract suite of the store port.

Every store adapter must pass it. Subclass :class:`StoreContract` in a test module and provide an
async ``store`` fixture that yields a fresh, empty store::

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self):
            s = await open_my_store()
            yield s
            await s.close()

The suite ships in the package so that authors of custom stores can run it too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from floworch.errors import ConflictError, RunNotFoundError
from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.records import (
    AttemptRecord,
    ClaimOutcome,
    DispatchRecord,
    EventRecord,
    FlowRecord,
    LoopItem,
    RunQuery,
    RunRecord,
    ScheduleState,
    SignalOutcome,
    SignalWaiter,
    StepRecord,
    step_changes,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _run(run_id: str | None = None, **overrides: Any) -> RunRecord:
    values: dict[str, Any] = {
        "run_id": run_id or uuid.uuid4().hex,
        "flow_id": "flow-a",
        "flow_version": "1",
        "trigger_key": "manual",
        "status": RunStatus.RUNNING,
        "trigger_body": {"orderId": 7, "items": [1, 2]},
        "trigger_headers": {"X-Id": "abc"},
        "created_at": T0,
        "remaining": 3,
    }
    values.update(overrides)
    return RunRecord(**values)


def _step(run_id: str, key: str, **overrides: Any) -> StepRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "step_key": key,
        "step_type": "Work",
        "status": StepStatus.PENDING,
        "created_at": T0,
    }
    values.update(overrides)
    return StepRecord(**values)


async def _new_run(store: Any, *steps: str, **overrides: Any) -> RunRecord:
    run = _run(**overrides)
    async with store.transaction() as tx:
        await tx.insert_run(run)
        await tx.insert_steps([_step(run.run_id, key) for key in steps])
    return run


class StoreContract:
    """Behaviour every store adapter shares. Requires a ``store`` fixture."""

    # -- flows ---------------------------------------------------------------------------------

    async def test_upsert_flow_keeps_the_enabled_flag_of_an_existing_row(self, store: Any) -> None:
        flow = FlowRecord("flow-a", "1", {"id": "flow-a"}, True, T0)
        await store.upsert_flow(flow)
        assert await store.set_flow_enabled("flow-a", False, T0)
        stored = await store.upsert_flow(
            FlowRecord("flow-a", "2", {"id": "flow-a", "v": 2}, True, T0)
        )
        assert stored.enabled is False
        again = await store.get_flow("flow-a")
        assert (
            again is not None
            and again.version == "2"
            and again.manifest == {"id": "flow-a", "v": 2}
        )
        assert again.enabled is False

    async def test_upsert_flow_can_overwrite_the_enabled_flag(self, store: Any) -> None:
        await store.upsert_flow(FlowRecord("flow-a", "1", {}, False, T0))
        stored = await store.upsert_flow(
            FlowRecord("flow-a", "1", {}, True, T0), keep_enabled=False
        )
        assert stored.enabled is True

    async def test_list_flows_and_unknown_flow(self, store: Any) -> None:
        await store.upsert_flow(FlowRecord("b", "1", {}, True, T0))
        await store.upsert_flow(FlowRecord("a", "1", {}, True, T0))
        assert [f.flow_id for f in await store.list_flows()] == ["a", "b"]
        assert await store.get_flow("missing") is None
        assert await store.set_flow_enabled("missing", True, T0) is False

    # -- runs ----------------------------------------------------------------------------------

    async def test_run_round_trips_every_field(self, store: Any) -> None:
        run = _run(
            idempotency_key="k1",
            source_run_id="src",
            timeout_at=T0 + timedelta(hours=1),
            trace_context={"traceparent": "00-abc-def-01"},
            trigger_body={"nested": {"list": [1, 2.5, "x", None, True]}},
        )
        async with store.transaction() as tx:
            await tx.insert_run(run)
        got = await store.get_run(run.run_id)
        assert got == run

    async def test_update_run_adds_remaining_atomically_and_sets_fields(self, store: Any) -> None:
        run = await _new_run(store)
        async with store.run_transaction(run.run_id) as tx:
            updated = await tx.update_run(run.run_id, remaining_delta=-2)
            assert updated.remaining == 1
            done = await tx.update_run(
                run.run_id, status=RunStatus.CANCELLED, completed_at=T0, cancel_reason="stop"
            )
        assert done.status == RunStatus.CANCELLED
        got = await store.get_run(run.run_id)
        assert got is not None
        assert (got.remaining, got.status, got.completed_at, got.cancel_reason) == (
            1,
            RunStatus.CANCELLED,
            T0,
            "stop",
        )
        async with store.run_transaction(run.run_id) as tx:
            await tx.update_run(run.run_id, status=RunStatus.RUNNING, clear_completed=True)
        got = await store.get_run(run.run_id)
        assert got is not None and got.completed_at is None and got.status == RunStatus.RUNNING

    async def test_seq_floor_starts_at_zero_and_is_written_only_when_given(
        self, store: Any
    ) -> None:
        run = await _new_run(store)
        fresh = await store.get_run(run.run_id)
        assert fresh is not None and fresh.seq_floor == 0
        async with store.run_transaction(run.run_id) as tx:
            raised = await tx.update_run(run.run_id, seq_floor=7)
            assert raised.seq_floor == 7
            kept = await tx.update_run(run.run_id, remaining_delta=-1)
            assert kept.seq_floor == 7
        got = await store.get_run(run.run_id)
        assert got is not None and got.seq_floor == 7

    async def test_one_writer_per_run_at_a_time(self, store: Any) -> None:
        """What ``run_transaction`` promises (and every join relies on): while one transaction
        holds a run, no other transaction of that run is inside. Each writer here reads a count
        from a step's state, lets the others run while it holds the run, and writes the count
        plus one; two writers inside at once would be seen, and would lose increments."""
        run = await _new_run(store, "a")
        inside = 0
        most_inside = 0

        async def bump() -> None:
            nonlocal inside, most_inside
            async with store.run_transaction(run.run_id) as tx:
                inside += 1
                most_inside = max(most_inside, inside)
                step = (await tx.get_steps(run.run_id, ["a"]))["a"]
                count = step.state["n"] if isinstance(step.state, dict) else 0
                await asyncio.sleep(0.005)  # every other writer gets the chance to come in
                await tx.update_step(run.run_id, "a", step_changes(state={"n": count + 1}))
                inside -= 1

        await asyncio.gather(*(bump() for _ in range(12)))
        assert most_inside == 1, f"{most_inside} writers of one run were inside at once"
        final = (await store.get_outputs(run.run_id, ["a"]))["a"]
        assert final.state == {"n": 12}

    async def test_rows_read_with_the_lock_answer_as_the_database_does(self, store: Any) -> None:
        """``run_transaction(steps=...)`` only reads ahead: reads, fenced updates, inserts and
        ledger rows inside it answer as they do without it, and what commits is the same."""
        run = await _new_run(store, "p")
        async with store.run_transaction(run.run_id) as tx:
            await tx.update_step(run.run_id, "p", step_changes(status=StepStatus.RUNNING, seq=2))
            await tx.insert_steps([_step(run.run_id, "done", status=StepStatus.SUCCEEDED)])
        keys = ["p", "done", "next"]
        succeeded = step_changes(status=StepStatus.SUCCEEDED, output={"v": 1})
        # Fenced updates of a row read ahead: a wrong seq or status is refused.
        async with store.run_transaction(run.run_id, steps=keys) as tx:
            assert await tx.update_step(run.run_id, "p", succeeded, expect_seq=1) is None
        async with store.run_transaction(run.run_id, steps=keys) as tx:
            pending = [StepStatus.PENDING]
            assert await tx.update_step(run.run_id, "p", succeeded, expect_statuses=pending) is None
        async with store.run_transaction(run.run_id, steps=keys) as tx:
            seen = await tx.get_steps(run.run_id, keys)
            assert sorted(seen) == ["done", "p"] and seen["p"].seq == 2
            assert seen == await store.get_outputs(run.run_id, keys)
            done = await tx.update_step(
                run.run_id, "p", succeeded, expect_seq=2, expect_statuses=[StepStatus.RUNNING]
            )
            assert done is not None and done.status == StepStatus.SUCCEEDED
            assert done.output == {"v": 1} and done.seq == 2
            again = await tx.update_step(
                run.run_id, "p", succeeded, expect_seq=2, expect_statuses=[StepStatus.RUNNING]
            )
            assert again is None  # this transaction's own write counts
            assert (await tx.get_steps(run.run_id, ["p"]))["p"].status == StepStatus.SUCCEEDED
            await tx.insert_steps([_step(run.run_id, "next", seq=3)])
            assert (await tx.get_steps(run.run_id, ["next"]))["next"].seq == 3
            ledger = [DispatchRecord(run.run_id, "next", 3, "flow-a", T0, T0, None)]
            assert await tx.record_dispatches(ledger) == ledger
            assert await tx.record_dispatches(ledger) == []
        steps = {s.step_key: s for s in await store.get_steps(run.run_id)}
        assert steps["p"].status == StepStatus.SUCCEEDED and steps["p"].output == {"v": 1}
        assert steps["next"].status == StepStatus.PENDING and steps["next"].seq == 3
        due = await store.due_dispatches(
            T0, unsent_grace_until=T0 + timedelta(days=1), sent_stuck_before=T0, limit=10
        )
        assert [(d.step_key, d.seq) for d in due] == [("next", 3)]

    async def test_rows_read_with_the_lock_after_a_delete_and_a_recreate(self, store: Any) -> None:
        run = await _new_run(store, "a")
        async with store.run_transaction(run.run_id, steps=["a"]) as tx:
            await tx.delete_steps(run.run_id, ["a"])
            assert await tx.get_steps(run.run_id, ["a"]) == {}
            await tx.insert_steps([_step(run.run_id, "a", seq=5)])
            assert (await tx.get_steps(run.run_id, ["a"]))["a"].seq == 5
        assert [(s.step_key, s.seq) for s in await store.get_steps(run.run_id)] == [("a", 5)]

    async def test_run_transaction_of_unknown_run_raises(self, store: Any) -> None:
        with pytest.raises(RunNotFoundError):
            async with store.run_transaction("nope"):
                pass

    async def test_exception_rolls_back_the_transaction(self, store: Any) -> None:
        run = await _new_run(store, "a")
        with pytest.raises(RuntimeError):
            async with store.run_transaction(run.run_id) as tx:
                await tx.update_run(run.run_id, remaining_delta=-1)
                await tx.update_step(run.run_id, "a", step_changes(status=StepStatus.SUCCEEDED))
                await tx.insert_steps([_step(run.run_id, "b")])
                await tx.append_events([EventRecord(run.run_id, "x", T0)])
                raise RuntimeError("boom")
        got = await store.get_run(run.run_id)
        assert got is not None and got.remaining == run.remaining
        assert [(s.step_key, s.status) for s in await store.get_steps(run.run_id)] == [
            ("a", StepStatus.PENDING)
        ]
        assert await store.list_events(run.run_id) == []

    async def test_a_duplicate_step_fails_its_whole_transaction(self, store: Any) -> None:
        # A write may be held back and sent with a later statement or the commit (PostgreSQL
        # pipelines them); its error still fails the transaction, nothing of it stays, and the
        # store stays usable.
        run = await _new_run(store, "a")
        with pytest.raises(ConflictError):
            async with store.run_transaction(run.run_id) as tx:
                await tx.update_run(run.run_id, remaining_delta=-1)
                await tx.insert_steps([_step(run.run_id, "a")])
                await tx.append_events([EventRecord(run.run_id, "x", T0)])
        got = await store.get_run(run.run_id)
        assert got is not None and got.remaining == run.remaining
        assert await store.list_events(run.run_id) == []
        async with store.run_transaction(run.run_id) as tx:
            await tx.insert_steps([_step(run.run_id, "b")])
            await tx.append_events([EventRecord(run.run_id, "y", T0)])
        assert [e.kind for e in await store.list_events(run.run_id)] == ["y"]
        assert [s.step_key for s in await store.get_steps(run.run_id)] == ["a", "b"]

    async def test_update_run_returns_the_row_as_committed(self, store: Any) -> None:
        run = await _new_run(store)
        async with store.run_transaction(run.run_id) as tx:
            await tx.update_run(run.run_id, remaining_delta=-1, seq_floor=3)
            locked = await tx.update_run(
                run.run_id, status=RunStatus.FAILED, completed_at=T0, cancel_reason="why"
            )
            assert await tx.get_run(run.run_id) == locked
        assert await store.get_run(run.run_id) == locked
        async with store.transaction() as tx:  # not locked: the row comes from the database
            unlocked = await tx.update_run(
                run.run_id, status=RunStatus.RUNNING, clear_completed=True, remaining_delta=2
            )
        assert unlocked.remaining == run.remaining + 1 and unlocked.completed_at is None
        assert await store.get_run(run.run_id) == unlocked

    async def test_list_runs_filters_pages_and_counts(self, store: Any) -> None:
        ids = []
        for i in range(5):
            status = RunStatus.SUCCEEDED if i % 2 else RunStatus.RUNNING
            run = _run(created_at=T0 + timedelta(minutes=i), status=status)
            ids.append(run.run_id)
            async with store.transaction() as tx:
                await tx.insert_run(run)
        other = _run(flow_id="flow-b", created_at=T0 + timedelta(minutes=10))
        async with store.transaction() as tx:
            await tx.insert_run(other)
        runs = await store.list_runs(RunQuery(flow_id="flow-a"))
        assert [r.run_id for r in runs] == list(reversed(ids))
        page = await store.list_runs(RunQuery(flow_id="flow-a", limit=2, offset=1))
        assert [r.run_id for r in page] == [ids[3], ids[2]]
        running = await store.list_runs(
            RunQuery(flow_id="flow-a", statuses=frozenset({RunStatus.RUNNING}))
        )
        assert [r.run_id for r in running] == [ids[4], ids[2], ids[0]]
        assert await store.count_runs(RunQuery(flow_id="flow-a")) == 5
        assert await store.count_runs(RunQuery()) == 6
        recent = await store.list_runs(RunQuery(created_after=T0 + timedelta(minutes=3)))
        assert {r.run_id for r in recent} == {ids[3], ids[4], other.run_id}

    # -- idempotency ---------------------------------------------------------------------------

    async def test_idempotency_key_is_insert_once(self, store: Any) -> None:
        async with store.transaction() as tx:
            assert await tx.claim_idempotency_key("f", "manual", "k", "run-1", T0) is None
        async with store.transaction() as tx:
            assert await tx.claim_idempotency_key("f", "manual", "k", "run-2", T0) == "run-1"
            assert await tx.claim_idempotency_key("f", "other", "k", "run-3", T0) is None

    async def test_concurrent_idempotency_claims_register_one_run(self, store: Any) -> None:
        async def claim(i: int) -> str | None:
            async with store.transaction() as tx:
                result: str | None = await tx.claim_idempotency_key(
                    "f", "manual", "same", f"run-{i}", T0
                )
            return result

        results = await asyncio.gather(*(claim(i) for i in range(20)))
        winners = [i for i, r in enumerate(results) if r is None]
        assert len(winners) == 1
        assert {r for r in results if r is not None} == {f"run-{winners[0]}"}

    # -- steps ---------------------------------------------------------------------------------

    async def test_steps_round_trip_and_conditional_update(self, store: Any) -> None:
        run = await _new_run(store, "a", "b")
        async with store.run_transaction(run.run_id) as tx:
            stale = await tx.update_step(
                run.run_id, "a", step_changes(status=StepStatus.FAILED), expect_seq=9
            )
            assert stale is None
            wrong_status = await tx.update_step(
                run.run_id,
                "a",
                step_changes(status=StepStatus.FAILED),
                expect_statuses=[StepStatus.RUNNING],
            )
            assert wrong_status is None
            done = await tx.update_step(
                run.run_id,
                "a",
                step_changes(
                    status=StepStatus.SUCCEEDED,
                    output={"n": [1, {"x": None}]},
                    completed_at=T0,
                    when_trace=[{"expression": "a", "resolved": "true", "result": True}],
                    state={"k": 1},
                ),
                expect_seq=1,
                expect_statuses=[StepStatus.PENDING],
            )
            assert done is not None and done.status == StepStatus.SUCCEEDED
            assert await tx.update_step(run.run_id, "zz", step_changes(seq=2)) is None
            got = await tx.get_steps(run.run_id, ["a", "missing"])
            assert set(got) == {"a"}
        a = (await store.get_outputs(run.run_id, ["a"]))["a"]
        assert a.output == {"n": [1, {"x": None}]} and a.completed_at == T0 and a.state == {"k": 1}
        assert a.when_trace == [{"expression": "a", "resolved": "true", "result": True}]
        steps = await store.get_steps(run.run_id)
        assert [s.step_key for s in steps] == ["a", "b"]

    async def test_update_step_writes_none_only_when_named(self, store: Any) -> None:
        run = await _new_run(store, "a")
        async with store.run_transaction(run.run_id) as tx:
            await tx.update_step(run.run_id, "a", step_changes(output={"v": 1}, skip_reason="r"))
            await tx.update_step(run.run_id, "a", step_changes(status=StepStatus.RUNNING))
        a = (await store.get_outputs(run.run_id, ["a"]))["a"]
        assert a.output == {"v": 1} and a.skip_reason == "r"
        async with store.run_transaction(run.run_id) as tx:
            await tx.update_step(run.run_id, "a", step_changes(output=None))
        a = (await store.get_outputs(run.run_id, ["a"]))["a"]
        assert a.output is None and a.skip_reason == "r"

    async def test_steps_with_prefix_and_delete(self, store: Any) -> None:
        run = await _new_run(store, "each", "each.0.charge", "each.1.charge", "eachother")
        async with store.run_transaction(run.run_id) as tx:
            body = await tx.get_steps_with_prefix(run.run_id, "each.")
            assert sorted(s.step_key for s in body) == ["each.0.charge", "each.1.charge"]
            assert len(await tx.get_steps_with_prefix(run.run_id, "")) == 4
            await tx.delete_steps(run.run_id, ["each.1.charge"])
        assert [s.step_key for s in await store.get_steps(run.run_id)] == [
            "each",
            "each.0.charge",
            "eachother",
        ]

    async def test_loop_items_are_stored_replaced_and_deleted_with_their_step(
        self, store: Any
    ) -> None:
        run = await _new_run(store, "each", "other")
        items = [{"id": 1}, None, "three", [4]]
        async with store.run_transaction(run.run_id) as tx:
            await tx.put_loop_items(run.run_id, "each", items)
            await tx.put_loop_items(run.run_id, "other", ["x"])
        for index, item in enumerate(items):
            assert await store.get_loop_item(run.run_id, "each", index) == LoopItem(item)
        assert await store.get_loop_item(run.run_id, "each", len(items)) is None
        assert await store.get_loop_item(run.run_id, "each", -1) is None
        assert await store.get_loop_item(run.run_id, "nothing", 0) is None
        async with store.run_transaction(run.run_id) as tx:  # a loop that starts again
            await tx.put_loop_items(run.run_id, "each", ["only"])
        assert await store.get_loop_item(run.run_id, "each", 0) == LoopItem("only")
        assert await store.get_loop_item(run.run_id, "each", 1) is None
        async with store.run_transaction(run.run_id) as tx:
            await tx.delete_steps(run.run_id, ["each"])
        assert await store.get_loop_item(run.run_id, "each", 0) is None
        assert await store.get_loop_item(run.run_id, "other", 0) == LoopItem("x")

    async def test_a_thousand_loop_items_in_one_call(self, store: Any) -> None:
        run = await _new_run(store, "each")
        async with store.run_transaction(run.run_id) as tx:
            await tx.put_loop_items(run.run_id, "each", [{"i": i} for i in range(1000)])
        assert await store.get_loop_item(run.run_id, "each", 999) == LoopItem({"i": 999})

    async def test_attempt_history(self, store: Any) -> None:
        run = await _new_run(store, "a")
        async with store.run_transaction(run.run_id) as tx:
            for n, status in ((1, StepStatus.FAILED), (2, StepStatus.SUCCEEDED)):
                await tx.insert_attempt(
                    AttemptRecord(run.run_id, "a", n, n, status, T0, T0, {"n": n}, None)
                )
        attempts = await store.get_attempts(run.run_id, "a")
        assert [(a.attempt, a.status, a.output) for a in attempts] == [
            (1, StepStatus.FAILED, {"n": 1}),
            (2, StepStatus.SUCCEEDED, {"n": 2}),
        ]
        assert await store.get_attempts(run.run_id, "b") == []

    # -- claims --------------------------------------------------------------------------------

    async def test_claim_marks_running_and_returns_the_run(self, store: Any) -> None:
        run = await _new_run(store, "a")
        lease = T0 + timedelta(seconds=30)
        result = await store.claim_step(run.run_id, "a", 1, owner="w1", lease_until=lease, now=T0)
        assert result.outcome == ClaimOutcome.ACQUIRED
        assert result.run is not None and result.run.trigger_body == run.trigger_body
        assert result.step is not None and result.step.status == StepStatus.RUNNING
        steps = await store.get_steps(run.run_id)
        assert steps[0].status == StepStatus.RUNNING and steps[0].lease_owner == "w1"
        assert steps[0].started_at == T0 and steps[0].lease_expires_at == lease

    async def test_claims_return_their_own_run_and_step_among_many(self, store: Any) -> None:
        made = [
            await _new_run(store, "a", "b", trigger_body={"n": n}, created_at=T0 + timedelta(n))
            for n in range(3)
        ]
        lease = T0 + timedelta(seconds=30)
        for run in reversed(made):
            for key in ("b", "a"):
                result = await store.claim_step(
                    run.run_id, key, 1, owner="w", lease_until=lease, now=T0
                )
                assert result.acquired and result.run is not None and result.step is not None
                assert result.run == run
                assert (result.step.run_id, result.step.step_key) == (run.run_id, key)
        # A takeover reads the run as well.
        later = lease + timedelta(seconds=1)
        taken = await store.claim_step(
            made[1].run_id, "a", 1, owner="w2", lease_until=later + timedelta(30), now=later
        )
        assert taken.outcome == ClaimOutcome.TAKEN_OVER and taken.run == made[1]

    async def test_a_claim_reads_the_rows_it_is_asked_for(self, store: Any) -> None:
        run = await _new_run(store, "a")
        async with store.run_transaction(run.run_id) as tx:
            done = _step(run.run_id, "seed", status=StepStatus.SUCCEEDED, output={"x": 1})
            await tx.insert_steps([done])
        lease = T0 + timedelta(seconds=30)
        outputs = ["seed", "a", "missing"]
        got = await store.claim_step(
            run.run_id, "a", 1, owner="w", lease_until=lease, now=T0, outputs=outputs
        )
        assert got.acquired and sorted(got.outputs) == ["a", "seed"]
        assert got.outputs == await store.get_outputs(run.run_id, outputs)
        assert got.outputs["a"].status == StepStatus.RUNNING  # read after the claim
        again = await store.claim_step(
            run.run_id, "a", 1, owner="w2", lease_until=lease, now=T0, outputs=outputs
        )
        assert not again.acquired and again.outputs == {}

    async def test_second_claim_is_refused_while_the_lease_lives(self, store: Any) -> None:
        run = await _new_run(store, "a")
        lease = T0 + timedelta(seconds=30)
        await store.claim_step(run.run_id, "a", 1, owner="w1", lease_until=lease, now=T0)
        again = await store.claim_step(run.run_id, "a", 1, owner="w2", lease_until=lease, now=T0)
        assert again.outcome == ClaimOutcome.ALREADY_CLAIMED and again.run is None

    async def test_a_lapsed_lease_is_taken_over(self, store: Any) -> None:
        run = await _new_run(store, "a")
        await store.claim_step(
            run.run_id, "a", 1, owner="w1", lease_until=T0 + timedelta(seconds=5), now=T0
        )
        later = T0 + timedelta(seconds=10)
        taken = await store.claim_step(
            run.run_id, "a", 1, owner="w2", lease_until=later + timedelta(seconds=30), now=later
        )
        assert taken.outcome == ClaimOutcome.TAKEN_OVER
        steps = await store.get_steps(run.run_id)
        assert steps[0].lease_owner == "w2"
        assert await store.renew_lease(run.run_id, "a", 1, "w1", later) is None

    async def test_claims_of_stale_or_unknown_dispatches(self, store: Any) -> None:
        run = await _new_run(store, "a")
        lease = T0 + timedelta(seconds=30)
        assert (
            await store.claim_step(run.run_id, "a", 2, owner="w", lease_until=lease, now=T0)
        ).outcome == ClaimOutcome.STALE
        assert (
            await store.claim_step(run.run_id, "zz", 1, owner="w", lease_until=lease, now=T0)
        ).outcome == ClaimOutcome.STALE
        assert (
            await store.claim_step("no-run", "a", 1, owner="w", lease_until=lease, now=T0)
        ).outcome == ClaimOutcome.RUN_NOT_FOUND
        async with store.run_transaction(run.run_id) as tx:
            await tx.update_step(run.run_id, "a", step_changes(status=StepStatus.SUCCEEDED))
        assert (
            await store.claim_step(run.run_id, "a", 1, owner="w", lease_until=lease, now=T0)
        ).outcome == ClaimOutcome.STALE

    async def test_a_waiting_step_is_claimed_at_its_new_seq(self, store: Any) -> None:
        run = await _new_run(store, "a")
        async with store.run_transaction(run.run_id) as tx:
            await tx.update_step(run.run_id, "a", step_changes(status=StepStatus.WAITING, seq=2))
        lease = T0 + timedelta(seconds=30)
        old = await store.claim_step(run.run_id, "a", 1, owner="w", lease_until=lease, now=T0)
        assert old.outcome == ClaimOutcome.STALE
        new = await store.claim_step(run.run_id, "a", 2, owner="w", lease_until=lease, now=T0)
        assert new.outcome == ClaimOutcome.ACQUIRED

    async def test_64_concurrent_claimers_one_wins(self, store: Any) -> None:
        run = await _new_run(store, "a")
        lease = T0 + timedelta(seconds=30)
        results = await asyncio.gather(
            *(
                store.claim_step(run.run_id, "a", 1, owner=f"w{i}", lease_until=lease, now=T0)
                for i in range(64)
            )
        )
        outcomes = [r.outcome for r in results]
        assert outcomes.count(ClaimOutcome.ACQUIRED) == 1
        assert set(outcomes) == {ClaimOutcome.ACQUIRED, ClaimOutcome.ALREADY_CLAIMED}

    async def test_renew_lease_extends_and_reports_the_run_status(self, store: Any) -> None:
        run = await _new_run(store, "a")
        await store.claim_step(
            run.run_id, "a", 1, owner="w1", lease_until=T0 + timedelta(seconds=5), now=T0
        )
        later = T0 + timedelta(seconds=60)
        assert await store.renew_lease(run.run_id, "a", 1, "w1", later) == RunStatus.RUNNING
        assert (await store.expired_leases(T0 + timedelta(seconds=30), limit=10)) == []
        assert await store.renew_lease(run.run_id, "a", 1, "other", later) is None
        async with store.run_transaction(run.run_id) as tx:
            await tx.update_run(run.run_id, status=RunStatus.CANCELLED)
        assert await store.renew_lease(run.run_id, "a", 1, "w1", later) == RunStatus.CANCELLED

    async def test_expired_leases_lists_running_steps_past_their_lease(self, store: Any) -> None:
        run = await _new_run(store, "a", "b")
        await store.claim_step(
            run.run_id, "a", 1, owner="w1", lease_until=T0 + timedelta(seconds=5), now=T0
        )
        await store.claim_step(
            run.run_id, "b", 1, owner="w1", lease_until=T0 + timedelta(seconds=50), now=T0
        )
        expired = await store.expired_leases(T0 + timedelta(seconds=10), limit=10)
        assert [s.step_key for s in expired] == ["a"]

    # -- dispatch ledger -----------------------------------------------------------------------

    async def test_dispatch_ledger_is_insert_once_and_due_rows_are_found(self, store: Any) -> None:
        run = await _new_run(store, "a", "b", "c")
        rows = [
            DispatchRecord(run.run_id, key, 1, "flow-a", due_at=T0, created_at=T0)
            for key in ("a", "b", "c")
        ]
        async with store.run_transaction(run.run_id) as tx:
            fresh = await tx.record_dispatches(rows[:2])
            assert [r.step_key for r in fresh] == ["a", "b"]
        async with store.run_transaction(run.run_id) as tx:
            fresh = await tx.record_dispatches(rows)
            assert [r.step_key for r in fresh] == ["c"]
        await store.mark_dispatched([(run.run_id, "a", 1)], T0)
        # Unsent rows are due once the grace passed; sent rows only when they look lost.
        due = await store.due_dispatches(
            T0, unsent_grace_until=T0, sent_stuck_before=T0 - timedelta(seconds=1), limit=10
        )
        assert sorted(r.step_key for r in due) == ["b", "c"]
        lost = await store.due_dispatches(
            T0, unsent_grace_until=T0, sent_stuck_before=T0 + timedelta(seconds=1), limit=10
        )
        assert sorted(r.step_key for r in lost) == ["a", "b", "c"]
        # A step that moved on (claimed, so Running) is never due again.
        await store.claim_step(
            run.run_id, "b", 1, owner="w", lease_until=T0 + timedelta(seconds=30), now=T0
        )
        await store.mark_dispatched([(run.run_id, "b", 1), (run.run_id, "c", 1)], T0)
        later = await store.due_dispatches(
            T0, unsent_grace_until=T0, sent_stuck_before=T0 + timedelta(seconds=1), limit=10
        )
        assert sorted(r.step_key for r in later) == ["a", "c"]

    async def test_due_dispatches_respects_future_due_times_and_limit(self, store: Any) -> None:
        run = await _new_run(store, "a", "b")
        async with store.run_transaction(run.run_id) as tx:
            await tx.record_dispatches(
                [
                    DispatchRecord(
                        run.run_id, "a", 1, "flow-a", due_at=T0 + timedelta(hours=1), created_at=T0
                    ),
                    DispatchRecord(run.run_id, "b", 1, "flow-a", due_at=T0, created_at=T0),
                ]
            )
        due = await store.due_dispatches(T0, unsent_grace_until=T0, sent_stuck_before=T0, limit=10)
        assert [r.step_key for r in due] == ["b"]
        assert (
            len(
                await store.due_dispatches(
                    T0 + timedelta(hours=2),
                    unsent_grace_until=T0 + timedelta(hours=2),
                    sent_stuck_before=T0,
                    limit=1,
                )
            )
            == 1
        )

    # -- signals -------------------------------------------------------------------------------

    async def test_signal_to_a_waiter_is_delivered_once(self, store: Any) -> None:
        run = await _new_run(store, "approve")
        async with store.run_transaction(run.run_id) as tx:
            assert (
                await tx.register_waiter(SignalWaiter(run.run_id, "approve", "approval", T0))
                is None
            )
        async with store.run_transaction(run.run_id) as tx:
            first = await tx.deliver_signal(run.run_id, "approval", {"ok": True}, T0)
        async with store.run_transaction(run.run_id) as tx:
            second = await tx.deliver_signal(run.run_id, "approval", {"ok": False}, T0)
        assert first == (SignalOutcome.DELIVERED, "approve")
        assert second[0] == SignalOutcome.ALREADY_DELIVERED
        waiters = await store.list_waiters(run.run_id)
        assert [(w.step_key, w.payload, w.delivered_at) for w in waiters] == [
            ("approve", {"ok": True}, T0)
        ]

    async def test_early_signal_is_buffered_and_consumed_by_the_waiter(self, store: Any) -> None:
        run = await _new_run(store, "approve")
        async with store.run_transaction(run.run_id) as tx:
            assert await tx.deliver_signal(run.run_id, "approval", [1, 2], T0) == (
                SignalOutcome.BUFFERED,
                None,
            )
        async with store.run_transaction(run.run_id) as tx:
            assert (await tx.deliver_signal(run.run_id, "approval", 3, T0))[0] == (
                SignalOutcome.ALREADY_DELIVERED
            )
        async with store.run_transaction(run.run_id) as tx:
            got = await tx.register_waiter(SignalWaiter(run.run_id, "approve", "approval", T0))
        assert got == {"payload": [1, 2]}

    async def test_50_concurrent_deliveries_one_delivered(self, store: Any) -> None:
        run = await _new_run(store, "approve")
        async with store.run_transaction(run.run_id) as tx:
            await tx.register_waiter(SignalWaiter(run.run_id, "approve", "go", T0))

        async def deliver(i: int) -> str:
            async with store.run_transaction(run.run_id) as tx:
                outcome: str = (await tx.deliver_signal(run.run_id, "go", {"i": i}, T0))[0]
                return outcome

        outcomes = await asyncio.gather(*(deliver(i) for i in range(50)))
        assert outcomes.count(SignalOutcome.DELIVERED) == 1
        assert outcomes.count(SignalOutcome.ALREADY_DELIVERED) == 49

    async def test_remove_waiter_and_unknown_signal_names(self, store: Any) -> None:
        run = await _new_run(store, "approve")
        async with store.run_transaction(run.run_id) as tx:
            await tx.register_waiter(
                SignalWaiter(run.run_id, "approve", "go", T0, expires_at=T0 + timedelta(hours=1))
            )
            await tx.register_waiter(SignalWaiter(run.run_id, "approve", "go", T0 + timedelta(1)))
        waiters = await store.list_waiters(run.run_id)
        assert len(waiters) == 1 and waiters[0].created_at == T0
        async with store.run_transaction(run.run_id) as tx:
            await tx.remove_waiter(run.run_id, "approve")
        assert await store.list_waiters(run.run_id) == []

    # -- events --------------------------------------------------------------------------------

    async def test_events_append_in_order_with_increasing_ids(self, store: Any) -> None:
        run = await _new_run(store, "a")
        async with store.run_transaction(run.run_id) as tx:
            await tx.append_events(
                [
                    EventRecord(run.run_id, "RunStarted", T0, message="go"),
                    EventRecord(run.run_id, "StepStarted", T0, step_key="a", data={"attempt": 1}),
                ]
            )
        async with store.run_transaction(run.run_id) as tx:
            await tx.append_events([EventRecord(run.run_id, "StepSucceeded", T0, step_key="a")])
        events = await store.list_events(run.run_id)
        assert [e.kind for e in events] == ["RunStarted", "StepStarted", "StepSucceeded"]
        ids = [e.event_id for e in events]
        assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids))
        assert events[1].data == {"attempt": 1} and events[1].step_key == "a"
        tail = await store.list_events(run.run_id, after_id=events[0].event_id or 0)
        assert [e.kind for e in tail] == ["StepStarted", "StepSucceeded"]

    # -- schedules -----------------------------------------------------------------------------

    async def test_schedule_state_and_cron_fire_ledger(self, store: Any) -> None:
        state = ScheduleState(
            "f", "nightly", paused=True, cron_override="*/5 * * * *", last_fire_at=T0
        )
        async with store.transaction() as tx:
            await tx.put_schedule_state(state)
        assert await store.get_schedule_state("f", "nightly") == state
        async with store.transaction() as tx:
            await tx.put_schedule_state(ScheduleState("f", "nightly", paused=False))
        got = await store.get_schedule_state("f", "nightly")
        assert got is not None and got.paused is False and got.cron_override is None
        assert [s.trigger_key for s in await store.list_schedule_states()] == ["nightly"]
        async with store.transaction() as tx:
            assert await tx.record_cron_fire("f", "nightly", T0, "r1") is True
        async with store.transaction() as tx:
            assert await tx.record_cron_fire("f", "nightly", T0, "r2") is False
            assert await tx.record_cron_fire("f", "nightly", T0 + timedelta(days=1), None) is True

    async def test_schedule_read_modify_write_in_a_transaction_loses_nothing(
        self, store: Any
    ) -> None:
        async with store.transaction() as tx:
            assert await tx.get_schedule_state("f", "tick") is None
            await tx.put_schedule_state(ScheduleState("f", "tick", paused=False))
            seen = await tx.get_schedule_state("f", "tick")
            assert seen is not None and seen.paused is False

        async def bump(field: str) -> None:
            async with store.transaction() as tx:
                state = await tx.get_schedule_state("f", "tick")
                assert state is not None
                await asyncio.sleep(0.01)  # widen the window a lost update would need
                if field == "paused":
                    state = dataclasses.replace(state, paused=True)
                else:
                    state = dataclasses.replace(state, pending_sequence_number=42)
                await tx.put_schedule_state(state)

        await asyncio.gather(bump("paused"), bump("pending"))
        got = await store.get_schedule_state("f", "tick")
        assert got is not None and got.paused is True and got.pending_sequence_number == 42

    # -- reconciler scans and retention ------------------------------------------------------

    async def test_runs_past_timeout_and_unfinished_runs(self, store: Any) -> None:
        late = await _new_run(store, timeout_at=T0 + timedelta(minutes=1), run_id="r1")
        await _new_run(store, timeout_at=T0 + timedelta(hours=1), run_id="r2")
        await _new_run(store, status=RunStatus.SUCCEEDED, run_id="r3")
        past = await store.runs_past_timeout(T0 + timedelta(minutes=5), limit=10)
        assert [r.run_id for r in past] == [late.run_id]
        unfinished = await store.unfinished_runs(limit=10)
        assert [r.run_id for r in unfinished] == ["r1", "r2"]
        assert [r.run_id for r in await store.unfinished_runs(limit=10, after_run_id="r1")] == [
            "r2"
        ]

    async def test_prune_deletes_old_finished_runs_with_everything_they_own(
        self, store: Any
    ) -> None:
        old = await _new_run(store, "a", status=RunStatus.SUCCEEDED, completed_at=T0)
        async with store.run_transaction(old.run_id) as tx:
            await tx.append_events([EventRecord(old.run_id, "RunSucceeded", T0)])
            await tx.insert_attempt(
                AttemptRecord(old.run_id, "a", 1, 1, StepStatus.SUCCEEDED, T0, T0)
            )
            await tx.record_dispatches([DispatchRecord(old.run_id, "a", 1, "flow-a", T0, T0)])
            await tx.register_waiter(SignalWaiter(old.run_id, "a", "go", T0))
            await tx.put_loop_items(old.run_id, "a", [1, 2])
        recent = await _new_run(
            store, "a", status=RunStatus.SUCCEEDED, completed_at=T0 + timedelta(days=10)
        )
        running = await _new_run(store, "a")
        pruned = await store.prune_runs(T0 + timedelta(days=1), batch_size=100)
        assert pruned == 1
        assert await store.get_run(old.run_id) is None
        assert await store.get_steps(old.run_id) == []
        assert await store.list_events(old.run_id) == []
        assert await store.get_attempts(old.run_id) == []
        assert await store.list_waiters(old.run_id) == []
        assert await store.get_loop_item(old.run_id, "a", 0) is None
        assert await store.get_run(recent.run_id) is not None
        assert await store.get_run(running.run_id) is not None
        assert await store.prune_runs(T0 + timedelta(days=1), batch_size=100) == 0
