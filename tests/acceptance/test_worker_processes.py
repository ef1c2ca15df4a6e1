"""Real ``floworch worker`` processes on the local Service Bus emulator and PostgreSQL: two
workers share the example order flow, a SIGKILLed worker's step is finished by the other, SIGTERM
drains in-flight steps, a database outage only delays runs, and the command explains itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus.aio import ServiceBusClient

from floworch.emulator import ServiceBusEmulator
from floworch.model.statuses import RunStatus, StepStatus
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.storage.records import RunQuery, RunRecord, StepRecord
from floworch.testing.servicebus import start_servicebus_emulator
from floworch.testing.tcp_proxy import TcpProxy
from tests.acceptance.worker_support import (
    ORDER_FLOW,
    Cluster,
    Entities,
    PgSchema,
    declare_entities,
    eventually,
    require_postgres,
    write_flow,
)

pytestmark = pytest.mark.slow  # real worker processes: tens of seconds each

ORDER = "order-fulfilment"

# Appends "<pid> <run id> <step key>" to calls.txt beside it for every handler call. "Slow"
# sleeps SLOW_FIRST seconds on the first call it ever gets, SLOW_LATER after that. "Held" waits
# until the test creates the file "release" beside it (state, not a sleep, decides when it
# returns). "Stubborn" never returns and ignores cancellation.
HANDLERS = textwrap.dedent("""
    import asyncio
    import os
    from pathlib import Path

    import floworch

    CALLS = Path(__file__).with_name("calls.txt")
    RELEASE = Path(__file__).with_name("release")
    SLOW_FIRST = float(Path(__file__).with_name("slow_first").read_text())
    SLOW_LATER = 0.1


    def record(ctx):
        first = not CALLS.exists()
        with CALLS.open("a") as f:
            f.write(f"{os.getpid()} {ctx.run_id} {ctx.step_key}\\n")
        return first


    @floworch.handler("Slow")
    async def slow(ctx, inputs):
        first = record(ctx)
        await asyncio.sleep(SLOW_FIRST if first else SLOW_LATER)
        return {"pid": os.getpid()}


    @floworch.handler("Quick")
    async def quick(ctx, inputs):
        record(ctx)
        return {"pid": os.getpid(), "inputs": inputs}


    @floworch.handler("Held")
    async def held(ctx, inputs):
        record(ctx)
        for _ in range(2400):  # two minutes at most, so a failed test cannot hang a worker
            if RELEASE.exists():
                break
            await asyncio.sleep(0.05)
        return {"pid": os.getpid(), "released": RELEASE.exists()}


    @floworch.handler("Stubborn")
    async def stubborn(ctx, inputs):
        record(ctx)
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # a badly written handler: it ignores cancellation
""")


def tiny_flow(directory: Path, flow_id: str, *, slow_first: float, first: str = "Slow") -> Path:
    """``slow`` (a Slow handler, or ``first``) then ``after`` (Quick)."""
    path = write_flow(
        directory,
        flow_id,
        {
            "slow": {"type": first},
            "after": {
                "type": "Quick",
                "inputs": "@steps('slow').output",
                "runAfter": {"slow": ["Succeeded"]},
            },
        },
        HANDLERS,
    )
    (directory / "slow_first").write_text(str(slow_first))
    return path


def calls(directory: Path) -> list[tuple[int, str, str]]:
    path = directory / "calls.txt"
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(int(pid), run_id, step) for pid, run_id, step in rows]


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[ServiceBusEmulator]:
    emu = start_servicebus_emulator()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def pg() -> Iterator[PgSchema]:
    require_postgres()
    schema = PgSchema()
    try:
        yield schema
    finally:
        schema.drop()


@pytest.fixture
async def store(pg: PgSchema) -> AsyncIterator[Store]:
    """The test's schema, migrated before any worker starts (concurrent first migrations race)."""
    opened = await open_store(pg.url())
    try:
        yield opened
    finally:
        await opened.close()


def cluster_for(
    tmp_path: Path, emulator: ServiceBusEmulator, entities: Entities, pg: PgSchema
) -> Cluster:
    return Cluster(cwd=tmp_path, emulator=emulator, entities=entities, db_url=pg.url())


async def runs_of(store: Store, flow_id: str) -> list[RunRecord]:
    return await store.list_runs(RunQuery(flow_id=flow_id, limit=100))


async def steps_of(store: Store, run_id: str) -> dict[str, StepRecord]:
    return {s.step_key: s for s in await store.get_steps(run_id)}


async def wait_runs_done(
    store: Store, run_ids: list[str], cluster: Cluster, timeout: float = 60
) -> list[RunRecord]:
    async def done() -> list[RunRecord] | None:
        runs = [await store.get_run(run_id) for run_id in run_ids]
        if all(r is not None and RunStatus(r.status).is_terminal for r in runs):
            return [r for r in runs if r is not None]
        return None

    return await eventually(done, timeout=timeout, what="runs finished", detail=cluster.logs)


def assert_ran_once(records: list[tuple[int, str, str]]) -> None:
    twice = {key: n for key, n in Counter((r, s) for _, r, s in records).items() if n > 1}
    assert not twice, f"handlers ran more than once: {twice}"


# -- 1. two workers share the example order flow -------------------------------------------------


@pytest.mark.emulator
@pytest.mark.postgres
@pytest.mark.timeout(150)
async def test_two_workers_share_the_order_flow(
    tmp_path: Path, emulator: ServiceBusEmulator, pg: PgSchema, store: Store
) -> None:
    entities = declare_entities(emulator, [ORDER])
    cluster = cluster_for(tmp_path, emulator, entities, pg)
    try:
        workers = [cluster.start_worker(ORDER_FLOW), cluster.start_worker(ORDER_FLOW)]
        for w in workers:
            await w.wait_ready()

        customers = [f"c-{i}" for i in range(4)]
        keys = [f"order-{uuid.uuid4().hex[:8]}" for _ in customers[:2]]
        sent = await asyncio.gather(
            # Through the trigger queue: a worker starts the run.
            *(
                cluster.cli_ok(
                    "trigger", ORDER, "--servicebus", "--idempotency-key", key,
                    "--body", json.dumps({"customerId": c}),
                )
                for key, c in zip(keys, customers[:2], strict=True)
            ),
            # Into the database, with the entry step message sent straight to Service Bus.
            *(
                cluster.cli_ok("trigger", ORDER, "--body", json.dumps({"customerId": c}))
                for c in customers[2:]
            ),
        )  # fmt: skip
        assert sent[:2] == keys

        async def all_waiting() -> list[RunRecord] | None:
            runs = await runs_of(store, ORDER)
            if len(runs) < len(customers):
                return None
            for run in runs:
                approve = (await steps_of(store, run.run_id)).get("approve")
                if approve is None or approve.status != StepStatus.WAITING:
                    return None
            return runs

        runs = await eventually(
            all_waiting, timeout=60, what="every run waits for approval", detail=cluster.logs
        )
        by_key = {r.idempotency_key: r.run_id for r in runs}
        assert set(keys) <= set(by_key), "a trigger-queue message started no run"
        assert set(sent[2:]) <= {r.run_id for r in runs}

        outcomes = await asyncio.gather(
            *(
                cluster.cli_ok(
                    "signal", run.run_id, "approval",
                    "--payload", json.dumps({"approved": True, "by": "qa"}),
                )
                for run in runs
            )
        )  # fmt: skip
        assert outcomes == ["Delivered"] * len(runs)

        finished = await wait_runs_done(store, [r.run_id for r in runs], cluster)
        assert [r.status for r in finished] == [RunStatus.SUCCEEDED] * len(runs), cluster.logs()
        for run in finished:
            steps = await steps_of(store, run.run_id)
            customer = run.trigger_body["customerId"]
            assert steps["ship"].output == {
                "shipped": True,
                "note": f"Order batch for {customer} approved by qa",
            }
            assert steps["notify"].status == StepStatus.SKIPPED
            charges = sorted(k for k in steps if k.endswith(".charge"))
            assert len(charges) == 3, sorted(steps)
            ran = {k: s for k, s in steps.items() if k != "notify"}
            assert all(s.status == StepStatus.SUCCEEDED for s in ran.values()), ran
            assert all(s.attempt == 1 for s in ran.values()), {k: s.attempt for k, s in ran.items()}
            attempts = await store.get_attempts(run.run_id)
            per_step = Counter(a.step_key for a in attempts)
            assert all(n == 1 for n in per_step.values()), per_step
            assert all(a.attempt == 1 and a.status == StepStatus.SUCCEEDED for a in attempts)

        source = entities.step_pump(ORDER)
        shares = [w.pump(source)["completed"] for w in workers]
        assert min(shares) > 0, f"one worker did all the steps: {shares}"
        triggered = sum(w.status()["triggersStarted"] for w in workers)
        assert triggered == len(keys)
        assert all(w.pump(source)["dead_lettered"] == 0 for w in workers)
    finally:
        cluster.close()


# -- 2. a SIGKILLed worker's step is finished by the other -------------------------------------


@pytest.mark.emulator
@pytest.mark.postgres
@pytest.mark.timeout(150)
async def test_a_killed_workers_step_is_taken_over(
    tmp_path: Path, emulator: ServiceBusEmulator, pg: PgSchema, store: Store
) -> None:
    flow_dir = tmp_path / "flows"
    flow = tiny_flow(flow_dir, "crashy", slow_first=30)
    entities = declare_entities(emulator, ["crashy"], lock_seconds=5)
    cluster = cluster_for(tmp_path, emulator, entities, pg)
    try:
        workers = [cluster.start_worker(flow), cluster.start_worker(flow)]
        for w in workers:
            await w.wait_ready()
        run_id = await cluster.cli_ok("trigger", "crashy")

        async def running_somewhere() -> int | None:
            found = calls(flow_dir)
            return found[0][0] if found else None

        pid = await eventually(
            running_somewhere, timeout=30, what="the slow handler started", detail=cluster.logs
        )
        victim = next(w for w in workers if w.pid == pid)
        survivor = next(w for w in workers if w.pid != pid)
        victim.proc.send_signal(signal.SIGKILL)
        assert await victim.wait_exit(30) == -signal.SIGKILL

        [run] = await wait_runs_done(store, [run_id], cluster)
        assert run.status == RunStatus.SUCCEEDED, cluster.logs()
        ran = calls(flow_dir)
        slow_calls = [p for p, _, step in ran if step == "slow"]
        assert len(slow_calls) >= 2 and slow_calls[0] == victim.pid, ran
        assert survivor.pid in slow_calls[1:], ran
        steps = await steps_of(store, run_id)
        assert steps["slow"].status == StepStatus.SUCCEEDED
        assert steps["slow"].attempt == 1  # a takeover is not a retry
        assert steps["slow"].output == {"pid": survivor.pid}
        attempts = await store.get_attempts(run_id, "slow")
        assert [(a.attempt, a.status) for a in attempts] == [(1, StepStatus.SUCCEEDED)]
        assert [p for p, _, step in ran if step == "after"] == [survivor.pid]
    finally:
        cluster.close()


# -- 3. SIGTERM lets the step in flight finish --------------------------------------------------


@pytest.mark.emulator
@pytest.mark.postgres
@pytest.mark.timeout(150)
async def test_sigterm_finishes_the_step_in_flight_and_exits_0(
    tmp_path: Path, emulator: ServiceBusEmulator, pg: PgSchema, store: Store
) -> None:
    flow_dir = tmp_path / "flows"
    flow = tiny_flow(flow_dir, "graceful", slow_first=0, first="Held")
    entities = declare_entities(emulator, ["graceful"], lock_seconds=5)
    cluster = cluster_for(tmp_path, emulator, entities, pg)
    try:
        first = cluster.start_worker(flow, grace=60)
        await first.wait_ready()
        run_id = await cluster.cli_ok("trigger", "graceful")

        async def started() -> bool:
            return bool(calls(flow_dir))

        await eventually(started, timeout=30, what="the held handler started", detail=cluster.logs)
        stopped_at = datetime.now(UTC)
        first.proc.send_signal(signal.SIGTERM)

        async def stopping() -> bool:
            return "stopping: finishing steps in flight" in first.log()

        await eventually(stopping, timeout=30, what="the worker began to stop", detail=first.log)
        # The handler is still held: the step is in flight while the worker stops.
        assert (await steps_of(store, run_id))["slow"].status == StepStatus.RUNNING
        (flow_dir / "release").touch()
        assert await first.wait_exit(60) == 0, first.log()

        steps = await steps_of(store, run_id)
        slow = steps["slow"]
        assert slow.status == StepStatus.SUCCEEDED, first.log()
        assert slow.output == {"pid": first.pid, "released": True}
        assert slow.completed_at is not None and slow.completed_at > stopped_at
        # The slow step's message was completed: only its successor's is left.
        client = ServiceBusClient.from_connection_string(emulator.connection_string)
        async with client:
            receiver = client.get_subscription_receiver(
                entities.topic, entities.subscription("graceful")
            )
            async with receiver:
                left = await receiver.peek_messages(max_message_count=10)
        assert [m.subject for m in left] == ["after"], first.log()

        second = cluster.start_worker(flow)
        [run] = await wait_runs_done(store, [run_id], cluster)
        assert run.status == RunStatus.SUCCEEDED, cluster.logs()
        assert [step for _, _, step in calls(flow_dir)] == ["slow", "after"]
        await second.wait_ready()
        assert second.pump(entities.step_pump("graceful"))["received"] == 1
    finally:
        cluster.close()


# -- 3b. SIGTERM ends the process even when a handler ignores cancellation -----------------------


@pytest.mark.emulator
@pytest.mark.postgres
@pytest.mark.timeout(150)
async def test_sigterm_exits_although_a_handler_ignores_cancellation(
    tmp_path: Path, emulator: ServiceBusEmulator, pg: PgSchema, store: Store
) -> None:
    flow_dir = tmp_path / "flows"
    flow = tiny_flow(flow_dir, "stubborn", slow_first=0, first="Stubborn")
    entities = declare_entities(emulator, ["stubborn"], lock_seconds=5)
    cluster = cluster_for(tmp_path, emulator, entities, pg)
    try:
        worker = cluster.start_worker(flow, grace=1)
        await worker.wait_ready()
        run_id = await cluster.cli_ok("trigger", "stubborn")

        async def started() -> bool:
            return bool(calls(flow_dir))

        await eventually(started, timeout=30, what="the handler started", detail=cluster.logs)
        worker.proc.send_signal(signal.SIGTERM)
        # asyncio.run would wait for the handler for ever; the worker leaves it behind.
        assert await worker.wait_exit(60) == 0, worker.log()
        lines = [line for line in worker.log().splitlines() if "abandoned 1 handler(s)" in line]
        assert len(lines) == 1, worker.log()
        assert "'Stubborn' of step 'slow'" in lines[0] and run_id in lines[0], lines[0]
        assert "Traceback" not in worker.log(), worker.log()
        # The step's message was not completed: Service Bus redelivers it to another worker.
        assert (await steps_of(store, run_id))["slow"].status == StepStatus.RUNNING
    finally:
        cluster.close()


# -- 4. a database outage delays runs, loses none ----------------------------------------------


@pytest.mark.emulator
@pytest.mark.postgres
@pytest.mark.timeout(150)
async def test_a_database_outage_holds_messages_and_loses_nothing(
    tmp_path: Path, emulator: ServiceBusEmulator, pg: PgSchema, store: Store
) -> None:
    flow_dir = tmp_path / "flows"
    flow = tiny_flow(flow_dir, "outage", slow_first=0.1)
    # The default max delivery count: the outage must not use it up (messages are retried in
    # place while locked instead of being abandoned at once).
    entities = declare_entities(emulator, ["outage"], max_delivery_count=10)
    cluster = cluster_for(tmp_path, emulator, entities, pg)
    with TcpProxy("127.0.0.1", pg.server_port) as proxy:
        try:
            worker = cluster.start_worker(flow, db=pg.url(port=proxy.port))
            await worker.wait_ready()
            proxy.cut()
            keys = [f"outage-{uuid.uuid4().hex[:8]}" for _ in range(2)]
            sent = await asyncio.gather(
                *(
                    cluster.cli_ok("trigger", "outage", "--servicebus", "--idempotency-key", k)
                    for k in keys
                ),
                # Written by the CLI straight to the database, which the worker cannot reach.
                cluster.cli_ok("trigger", "outage", "--body", '{"direct": true}'),
            )
            direct_run = sent[-1]

            async def retrying_both() -> dict[str, Any] | None:
                status = await asyncio.to_thread(worker.status)
                pumps = status["pumps"]
                steps = pumps[entities.step_pump("outage")]["retried_in_place"]
                triggers = pumps[entities.trigger_pump("outage")]["retried_in_place"]
                # Several tries of each message, all while it stays locked.
                return status if steps > 1 and triggers > 3 else None

            status = await eventually(
                retrying_both,
                timeout=30,
                what="the worker retries step and trigger messages in place",
                detail=cluster.logs,
            )
            assert status["status"] == "not ready" and status["store"] != "ok", status
            await asyncio.sleep(4)  # an outage long enough to dead-letter without the back-off
            status = await asyncio.to_thread(worker.status)
            for source in (entities.step_pump("outage"), entities.trigger_pump("outage")):
                assert status["pumps"][source]["abandoned"] == 0, status
            assert calls(flow_dir) == []
            proxy.restore()

            async def all_started() -> list[RunRecord] | None:
                runs = await runs_of(store, "outage")
                return runs if len(runs) == 3 else None

            runs = await eventually(
                all_started, timeout=60, what="every trigger started a run", detail=cluster.logs
            )
            assert {r.idempotency_key for r in runs} >= set(keys)
            assert direct_run in {r.run_id for r in runs}
            finished = await wait_runs_done(store, [r.run_id for r in runs], cluster)
            assert [r.status for r in finished] == [RunStatus.SUCCEEDED] * 3, cluster.logs()
            ran = calls(flow_dir)
            assert_ran_once(ran)
            assert len(ran) == 6
            for source in (entities.step_pump("outage"), entities.trigger_pump("outage")):
                assert worker.pump(source)["dead_lettered"] == 0
            sub = emulator.backend.get_subscription_runtime_info(
                entities.topic, entities.subscription("outage")
            )
            triggers = emulator.backend.get_subscription_runtime_info(
                entities.triggers_topic, entities.subscription("outage")
            )
            assert sub.dead_letter_message_count == 0 and triggers.dead_letter_message_count == 0
            assert proxy.stats.cut + proxy.stats.refused > 0
            await worker.wait_ready()
        finally:
            cluster.close()


# -- 5. the command explains itself --------------------------------------------------------------


def _floworch(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWORCH_")}
    return subprocess.run(
        [sys.executable, "-m", "floworch", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_without_a_namespace_exits_2_naming_the_variable(tmp_path: Path) -> None:
    done = _floworch("worker", str(ORDER_FLOW), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "FLOWORCH_SERVICEBUS_CONNECTION" in done.stderr
    assert not (tmp_path / ".floworch").exists()  # it stopped before touching a database


def test_worker_help_lists_the_environment_variables(tmp_path: Path) -> None:
    done = _floworch("worker", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in (
        "FLOWORCH_FLOWS",
        "FLOWORCH_DB_URL",
        "FLOWORCH_SERVICEBUS_CONNECTION",
        "FLOWORCH_SERVICEBUS_NAMESPACE",
        "FLOWORCH_STEPS_TOPIC",
        "FLOWORCH_CRON_QUEUE",
        "FLOWORCH_TRIGGERS_TOPIC",
        "FLOWORCH_CONCURRENCY",
        "FLOWORCH_SHUTDOWN_GRACE",
        "FLOWORCH_HEALTH_PORT",
        "FLOWORCH_LEASE_SECONDS",
        "FLOWORCH_TICK_SECONDS",
    ):
        assert name in done.stdout, name
