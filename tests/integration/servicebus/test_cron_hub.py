"""The cron hub on the emulator with two worker replicas sharing one database.

Each replica is its own WorkerHost (its own ServiceBusClient, its own store connection pool) on
the same cron queue, with a short background tick so ``ensure_chains`` runs often. The tests
check the outcome that matters, one run per fire time, through the runs' ``X-Floworch-Fire-Time``
header and the cron fire ledger. They never assert wall-clock bounds; lags are only recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus.aio import ServiceBusClient
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.entities import QueueSettings
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.schedules import latest_missed, next_fire
from floworch.hosting.worker import WorkerHost, WorkerSettings
from floworch.model import CronTrigger, FlowDefinition, load_manifest
from floworch.runtime.servicebus.config import ServiceBusConnection, ServiceBusSettings
from floworch.runtime.servicebus.cron import CronHub, CronTick
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.storage.records import RunQuery
from floworch.storage.sql.schema import cron_fires
from floworch.storage.sql.store import SqlStore

from .conftest import declare_entities

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

KEY = "tick"
FIRE_HEADER = "X-Floworch-Fire-Time"
EVERY_SECOND = "* * * * * *"
ODD_FIRE_FRESH = timedelta(seconds=0.6)
PG_SERVER_URL = os.environ.get(
    "FLOWORCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
LAGS: dict[str, list[float]] = {}
"""Fire-time-to-run-start lags per test, printed at the end of the module (never asserted)."""


def cron_flow(flow_id: str, cron: str, *, missed: str = "fireOnce") -> Any:
    return load_manifest(
        {
            "id": flow_id,
            "version": "1",
            "triggers": {KEY: {"type": "Cron", "cron": cron, "missedFires": missed}},
            "steps": {"work": {"type": "Note", "inputs": "@triggerBody()"}},
        }
    )


def handlers() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("Note")
    async def note(inputs: Any) -> Any:
        return inputs

    return reg


class RecordingHub(CronHub):
    """The real hub, also noting every tick it handles and when (before, after) it did."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[CronTick] = []
        self.handled: dict[str, tuple[datetime, datetime]] = {}

    async def _on_tick(self, flow: FlowDefinition, tick: CronTick, trigger: CronTrigger) -> None:
        self.seen.append(tick)
        before = now()
        await super()._on_tick(flow, tick, trigger)
        self.handled.setdefault(tick.message_id, (before, now()))


class StallingHub(RecordingHub):
    """Once armed, holds a tick of the per-second chain just before it schedules an odd-second
    successor, until the test releases it (a slow replica, made deterministic)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.armed = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def _schedule(self, tick: CronTick) -> int:
        if self.armed and tick.cron == EVERY_SECOND and tick.fire_time.second % 2 == 1:
            self.armed = False
            self.held.set()
            await self.release.wait()
        return await super()._schedule(tick)


# -- databases ----------------------------------------------------------------------------------


def _postgres_schema_url() -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL schema (skips locally without PostgreSQL, fails when CI=true)."""
    engine = create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
    name = f"floworch_cron_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(CreateSchema(name))
    except Exception as exc:
        engine.dispose()
        reason = f"PostgreSQL at {make_url(PG_SERVER_URL).host} is not reachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(DropSchema(name, cascade=True))
        engine.dispose()

    url = make_url(PG_SERVER_URL).update_query_dict({"options": f"-csearch_path={name}"})
    return url.render_as_string(hide_password=False), drop


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """One SQLite file the replicas share (each opens its own engine on it)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'cron.db'}"


@pytest.fixture
async def open_stores() -> AsyncIterator[Callable[[str], Awaitable[Store]]]:
    opened: list[Store] = []

    async def open_one(url: str) -> Store:
        store = await open_store(url)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


class Replicas:
    """Builds worker replicas of one set of flows on one database and one namespace."""

    def __init__(
        self,
        emulator: ServiceBusEmulator,
        url: str,
        open_one: Callable[[str], Awaitable[Store]],
        flows: list[Any],
        sb: ServiceBusSettings,
        hub: type[RecordingHub] = RecordingHub,
    ) -> None:
        self.emulator = emulator
        self.url = url
        self.open_one = open_one
        self.flows = flows
        self.sb = sb
        self.hub = hub
        self.hosts: list[WorkerHost] = []
        self.running: list[WorkerHost] = []

    async def start(self, count: int = 1) -> list[WorkerHost]:
        started = []
        for _ in range(count):
            host = WorkerHost(
                store=await self.open_one(self.url),
                flows=self.flows,
                connection=ServiceBusConnection(connection_string=self.emulator.connection_string),
                handlers=handlers(),
                settings=WorkerSettings(servicebus=self.sb, grace=2.0, tick=timedelta(seconds=0.5)),
            )
            host.cron = self.hub(host.engine, host.client, queue=self.sb.cron_queue)
            self.hosts.append(host)
            await host.start()
            self.running.append(host)
            started.append(host)
        for host in started:
            await host.wait_receiving()
        return started

    async def stop_all(self) -> None:
        running, self.running = self.running, []
        await asyncio.gather(*(host.stop() for host in running))

    def seen(self) -> list[CronTick]:
        return [tick for host in self.hosts for tick in recording(host).seen]

    def handled(self) -> dict[datetime, datetime]:
        """When each tick's handling began, by its fire time (the earliest replica's)."""
        out: dict[datetime, datetime] = {}
        for tick in self.seen():
            for host in self.hosts:
                began = recording(host).handled.get(tick.message_id)
                if began is not None and (
                    tick.fire_time not in out or began[0] < out[tick.fire_time]
                ):
                    out[tick.fire_time] = began[0]
        return out

    def lags(self) -> list[float]:
        return [lag for host in self.hosts for lag in host.cron.lags]


def recording(host: WorkerHost) -> RecordingHub:
    assert isinstance(host.cron, RecordingHub)
    return host.cron


@pytest.fixture
async def replicas_of(
    emulator: ServiceBusEmulator,
    db_url: str,
    open_stores: Callable[[str], Awaitable[Store]],
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Replicas]]:
    made: list[Replicas] = []

    def make(
        flows: list[Any],
        sb: ServiceBusSettings | None = None,
        hub: type[RecordingHub] = RecordingHub,
    ) -> Replicas:
        group = Replicas(
            emulator,
            db_url,
            open_stores,
            flows,
            sb or declare_entities(emulator, [f.id for f in flows]),
            hub,
        )
        made.append(group)
        return group

    yield make
    for group in made:
        await group.stop_all()
        LAGS.setdefault(request.node.name, []).extend(group.lags())


@pytest.fixture(scope="module", autouse=True)
def report_lags() -> Any:
    yield
    for name, lags in LAGS.items():
        if lags:
            ordered = sorted(lags)
            print(  # a figure for the reader of -s output, never asserted
                f"\n{name}: cron lag over {len(ordered)} fires: "
                f"p50 {ordered[len(ordered) // 2] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
            )


# -- reading what happened ----------------------------------------------------------------------


async def fired(store: Store, flow_id: str) -> list[datetime]:
    """The fire times of the flow's runs, oldest first (duplicates kept, to be caught)."""
    runs = await store.list_runs(RunQuery(flow_id=flow_id, limit=100_000))
    assert all(run.trigger_key == KEY for run in runs)
    return sorted(datetime.fromisoformat(run.trigger_headers[FIRE_HEADER]) for run in runs)


async def ledger(store: Store, flow_id: str) -> list[datetime]:
    """The fire times recorded in the cron fire ledger."""
    assert isinstance(store, SqlStore)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(cron_fires.c.fire_time).where(
                cron_fires.c.flow_id == flow_id, cron_fires.c.trigger_key == KEY
            )
        )
        return sorted(row.fire_time for row in rows)


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 45.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.1)


def gaps(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


def now() -> datetime:
    return datetime.now(UTC)


def unexplained_skips(
    times: list[datetime], handled: dict[datetime, datetime], period: float = 1.0
) -> list[tuple[datetime, datetime]]:
    """The gaps between consecutive fire times that the missed-fire policy does not explain.

    A fire time is skipped on purpose only when its tick was handled a period or more after it
    (the machine was that slow): the hub then fires the latest missed time instead (fireOnce) and
    chains on from now. Any other gap is a lost fire.
    """
    unexplained = []
    for earlier, later in itertools.pairwise(times):
        if (later - earlier).total_seconds() <= period:
            continue
        late = [
            t
            for t, began in handled.items()
            if earlier < t < later and (began - t).total_seconds() >= period
        ]
        if not late:
            unexplained.append((earlier, later))
    return unexplained


async def sleep_until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - now()).total_seconds()))


# -- the tests ----------------------------------------------------------------------------------


async def exactly_once_per_second(
    url: str,
    emulator: ServiceBusEmulator,
    open_one: Callable[[str], Awaitable[Store]],
    record: str,
) -> None:
    flow_id = f"sec-{uuid.uuid4().hex[:6]}"
    group = Replicas(
        emulator,
        url,
        open_one,
        [cron_flow(flow_id, EVERY_SECOND)],
        declare_entities(emulator, [flow_id]),
    )
    store = await open_one(url)
    try:
        a, b = await group.start(2)

        async def ten_fired() -> bool:
            return len(set(await fired(store, flow_id))) >= 10

        await wait_until(ten_fired, "10 per-second fires")
        await asyncio.sleep(1.0)  # a fire or two more, so the window's edges are inside
    finally:
        await group.stop_all()
        LAGS.setdefault(record, []).extend(group.lags())
    times = await fired(store, flow_id)
    assert len(times) == len(set(times)), f"a fire time started two runs: {times}"
    assert unexplained_skips(times, group.handled()) == [], f"a fire time was skipped: {times}"
    assert len(times) >= 10
    assert await ledger(store, flow_id) == times
    assert a.cron.fired + b.cron.fired == len(times)


async def test_per_second_cron_on_two_replicas_fires_each_time_once(
    emulator: ServiceBusEmulator,
    db_url: str,
    open_stores: Callable[[str], Awaitable[Store]],
    request: pytest.FixtureRequest,
) -> None:
    await exactly_once_per_second(db_url, emulator, open_stores, request.node.name)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped after the test (request it before ``open_stores``)."""
    url, drop = _postgres_schema_url()
    yield url
    drop()


@pytest.mark.postgres
async def test_per_second_cron_on_two_replicas_fires_each_time_once_on_postgres(
    pg_url: str,
    emulator: ServiceBusEmulator,
    open_stores: Callable[[str], Awaitable[Store]],
    request: pytest.FixtureRequest,
) -> None:
    await exactly_once_per_second(pg_url, emulator, open_stores, request.node.name)


async def test_pause_on_one_replica_stops_both_and_resume_restarts(
    replicas_of: Callable[..., Replicas],
) -> None:
    flow_id = f"pause-{uuid.uuid4().hex[:6]}"
    group = replicas_of([cron_flow(flow_id, EVERY_SECOND)])
    a, b = await group.start(2)

    def fires_after(moment: datetime, count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len([t for t in await fired(a.store, flow_id) if t > moment]) >= count

        return check

    await wait_until(fires_after(datetime.min.replace(tzinfo=UTC), 2), "the chain to fire")
    await a.engine.set_schedule(flow_id, KEY, paused=True)
    paused_at = now()
    ticks_before = len(group.seen())
    await asyncio.sleep(3.5)
    # A fire decided before the pause committed has a fire time before it (its run may still be
    # in the making); nothing due after the pause was fired, by either replica.
    during = await fired(a.store, flow_id)
    assert [t for t in during if t >= paused_at] == [], f"fired while paused: {during}"
    assert [t for t in await ledger(a.store, flow_id) if t >= paused_at] == []
    assert len(group.seen()) > ticks_before, "the chain stopped ticking while paused"

    await b.engine.set_schedule(flow_id, KEY, paused=False)
    resumed_at = now()
    await wait_until(fires_after(resumed_at, 3), "fires after resuming")
    after = [t for t in await fired(a.store, flow_id) if t > resumed_at]
    assert gaps(after) == [1.0] * (len(after) - 1)
    assert len(set(await fired(a.store, flow_id))) == len(await fired(a.store, flow_id))


async def test_override_moves_both_replicas_to_the_new_expression(
    replicas_of: Callable[..., Replicas], emulator: ServiceBusEmulator
) -> None:
    flow_id = f"ovr-{uuid.uuid4().hex[:6]}"
    group = replicas_of([cron_flow(flow_id, EVERY_SECOND)])
    a, _ = await group.start(2)

    async def odd_second_just_fired() -> bool:
        times = await fired(a.store, flow_id)
        return bool(times) and times[-1].second % 2 == 1 and now() - times[-1] < ODD_FIRE_FRESH

    # Override right after an odd fire time: the old chain's pending tick is then for the next
    # (even) second, which is also the new chain's first fire time. The two ticks share their
    # MessageId, so the new chain's seed is merged into the old tick.
    await wait_until(odd_second_just_fired, "a fire on an odd second")
    await a.engine.set_schedule(flow_id, KEY, cron_override="*/2 * * * * *")
    changed_at = now()
    # A tick of the old expression still on its way (here: sent by hand for an odd second a few
    # seconds ahead) must be dropped on arrival, not fired and not re-chained.
    stale_at = changed_at.replace(microsecond=0) + timedelta(seconds=4)
    if stale_at.second % 2 == 0:
        stale_at += timedelta(seconds=1)
    stale = CronTick(flow_id, KEY, stale_at, EVERY_SECOND)
    async with (
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_queue_sender(group.sb.cron_queue) as sender,
    ):
        await sender.schedule_messages(stale.to_message(), stale_at)

    async def new_chain_ran() -> bool:
        new = [t for t in await fired(a.store, flow_id) if t >= changed_at]
        stale_seen = any(tick.fire_time == stale_at for tick in group.seen())
        return len(new) >= 4 and stale_seen and new[-1] > stale_at

    await wait_until(new_chain_ran, "4 fires of the new expression and the stale tick")
    times = await fired(a.store, flow_id)
    after = [t for t in times if t >= changed_at]
    assert all(t.second % 2 == 0 and t.microsecond == 0 for t in after), after
    assert gaps(after) == [2.0] * (len(after) - 1), f"the new chain skipped a fire: {after}"
    assert stale_at not in times
    assert len(times) == len(set(times))
    assert await ledger(a.store, flow_id) == times


async def test_an_override_while_a_tick_is_in_hand_still_starts_the_new_chain(
    replicas_of: Callable[..., Replicas],
) -> None:
    flow_id = f"ovr-race-{uuid.uuid4().hex[:6]}"
    group = replicas_of([cron_flow(flow_id, EVERY_SECOND)], hub=StallingHub)
    [host] = await group.start(1)
    hub = host.cron
    assert isinstance(hub, StallingHub)
    # The replica has read the schedule state for an even-second tick and is about to chain the
    # odd second after it (old expression) when the override commits.
    hub.armed = True
    await asyncio.wait_for(hub.held.wait(), 30)
    await host.engine.set_schedule(flow_id, KEY, cron_override="*/2 * * * * *")
    changed_at = now()
    hub.release.set()

    async def new_chain_ran() -> bool:
        return len([t for t in await fired(host.store, flow_id) if t >= changed_at]) >= 3

    await wait_until(new_chain_ran, "3 fires of the new expression", timeout=30)
    times = await fired(host.store, flow_id)
    after = [t for t in times if t >= changed_at]
    assert all(t.second % 2 == 0 for t in after), after
    assert gaps(after) == [2.0] * (len(after) - 1), after


@pytest.mark.parametrize("policy", ["fireOnce", "skip"])
async def test_missed_fires_while_no_replica_runs(
    replicas_of: Callable[..., Replicas], policy: str
) -> None:
    period = 3  # seconds, long enough that a restarted replica is up before the next fire time
    flow_id = f"miss-{policy.lower()}-{uuid.uuid4().hex[:6]}"
    cron = f"*/{period} * * * * *"
    group = replicas_of([cron_flow(flow_id, cron, missed=policy)])
    a, _ = await group.start(2)
    store = a.store

    async def one_fired() -> bool:
        return len(await fired(store, flow_id)) >= 1

    await wait_until(one_fired, "the first fire")
    await group.stop_all()
    last = max(await fired(store, flow_id))
    # Stay down until just after a fire time at least two periods after the last fire, so the
    # downtime holds two or more missed fire times.
    latest = last + timedelta(seconds=2 * period)
    while latest < now() + timedelta(seconds=0.3):
        latest += timedelta(seconds=period)
    await sleep_until(latest + timedelta(seconds=0.15))
    [host] = await group.start(1)
    # The chain's pending tick (for last + period) arrives late; the hub applies the policy to
    # the fire times due when it handles it, at a moment within [handled_from, handled_to].
    late = CronTick(flow_id, KEY, last + timedelta(seconds=period), cron)

    async def late_handled() -> bool:
        return late.message_id in recording(host).handled

    await wait_until(late_handled, "the late tick")
    handled_from, handled_to = recording(host).handled[late.message_id]

    async def regular_fired() -> bool:
        return any(t > handled_to for t in await fired(store, flow_id))

    await wait_until(regular_fired, "a regular fire after the restart")
    await group.stop_all()
    times = await fired(store, flow_id)
    after = [t for t in times if t > last]
    assert gaps(after) == [float(period)] * (len(after) - 1), f"chain broken: {after}"
    latest_due = latest_missed(cron, last, handled_from)
    assert latest_due is not None and latest_due >= latest  # two or more fire times were missed
    if policy == "fireOnce":
        # One fire for the whole downtime, the latest missed time; the chain goes on after it.
        assert after[0] in {latest_due, latest_missed(cron, last, handled_to)}, (last, after)
    else:
        assert after[0] in {next_fire(cron, handled_from), next_fire(cron, handled_to)}, (
            last,
            handled_from,
            after,
        )
    assert len(times) == len(set(times))
    assert await ledger(store, flow_id) == times


async def test_a_tick_delivered_several_times_starts_one_run(
    replicas_of: Callable[..., Replicas], emulator: ServiceBusEmulator
) -> None:
    yearly = "0 0 1 1 *"
    flow_id = f"redeliver-{uuid.uuid4().hex[:6]}"
    sb = declare_entities(emulator, [flow_id])
    # A cron queue without duplicate detection, so every copy of the tick really arrives.
    queue = f"cron-nodup-{uuid.uuid4().hex[:8]}"
    emulator.backend.create_queue(QueueSettings(name=queue, requires_duplicate_detection=False))
    group = replicas_of([cron_flow(flow_id, yearly)], replace(sb, cron_queue=queue))
    a, b = await group.start(2)
    fire_time = latest_missed(yearly, now() - timedelta(days=400), now())
    assert fire_time is not None
    tick = CronTick(flow_id, KEY, fire_time, yearly)
    async with (
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_queue_sender(queue) as sender,
    ):
        await sender.send_messages([tick.to_message() for _ in range(4)])

        def copies_processed(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return sum(t.message_id == tick.message_id for t in group.seen()) >= count

            return check

        await wait_until(copies_processed(4), "4 copies of the tick")
        # One more copy after the run exists, as a redelivery after a lost lock would be.
        await sender.send_messages(tick.to_message())
        await wait_until(copies_processed(5), "the late copy")
    await group.stop_all()  # lets the copies in flight finish
    times = await fired(a.store, flow_id)
    assert times == [fire_time]
    assert await ledger(a.store, flow_id) == [fire_time]
    assert a.cron.fired + b.cron.fired == 1
    for host in (a, b):
        host.cron.lags.clear()  # a fire time picked months back: not a lag worth printing
    state = await a.store.get_schedule_state(flow_id, KEY)
    assert state is not None and state.next_fire_at == next_fire(yearly, fire_time)
