"""Engine scenarios on real SQL stores (SQLite and PostgreSQL): message ids that never repeat
(issue 9.1), parked steps the reconciler leaves alone (16.3), outcomes the store cannot keep
fail the step once (16.1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from floworch import limits
from floworch.engine.engine import Engine
from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import ManualClock
from floworch.engine.reconciler import ReconcilerSettings
from floworch.errors import StepError
from floworch.model import load_manifest
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.storage.records import ClaimOutcome
from floworch.storage.sql.store import SqlStore

from .conftest import empty_tables

START = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = ReconcilerSettings(unsent_grace=timedelta(seconds=1), lost_after=timedelta(seconds=60))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_migrated_url")
        return url
    return sqlite_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    assert isinstance(opened, SqlStore)
    await empty_tables(opened)
    yield opened
    await opened.close()


class Recording:
    """A dispatcher the test delivers from by hand."""

    def __init__(self) -> None:
        self.sent: list[StepEnvelope] = []

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        self.sent.extend(envelopes)

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        self.sent.append(envelope)

    def take(self) -> list[StepEnvelope]:
        sent, self.sent = self.sent, []
        return sent


def engine_on(
    store: Store, manifest: dict[str, Any], reg: HandlerRegistry
) -> tuple[Engine, Recording, ManualClock]:
    clock = ManualClock(START)
    dispatcher = Recording()
    engine = Engine(
        store=store,
        dispatcher=dispatcher,
        flows=[load_manifest({"id": "f", "version": "1", **manifest})],
        handlers=reg,
        clock=clock,
    )
    return engine, dispatcher, clock


async def drain(engine: Engine, dispatcher: Recording, seen: list[str]) -> None:
    while batch := dispatcher.take():
        for envelope in batch:
            seen.append(envelope.message_id)
            await engine.run_step(envelope)


async def test_a_retried_foreach_gets_new_message_ids(store: Store) -> None:
    reg = HandlerRegistry()
    declined = {2}

    @reg.handler("Charge")
    async def charge(inputs: Any) -> Any:
        if inputs in declined:
            raise StepError("declined", retryable=False)
        return inputs

    body = {"charge": {"type": "Charge", "inputs": "@item()"}}
    manifest = {"steps": {"each": {"type": "ForEach", "forEach": [1, 2, 3], "steps": body}}}
    engine, dispatcher, _ = engine_on(store, manifest, reg)
    run_id = (await engine.trigger("f")).run_id
    assert run_id is not None
    seen: list[str] = []
    await drain(engine, dispatcher, seen)
    assert (await engine.get_run(run_id)).status == "Failed"
    declined.clear()
    await engine.retry_step(run_id, "each")
    await drain(engine, dispatcher, seen)
    run = await engine.get_run(run_id)
    assert run.status == "Succeeded"
    assert run.steps["each"].output == [1, 2, 3]
    assert len(seen) == 8 and len(set(seen)) == 8


async def test_a_lost_message_is_redispatched_once_per_back_off(store: Store) -> None:
    reg = HandlerRegistry()

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        return "done"

    engine, dispatcher, clock = engine_on(store, {"steps": {"s": {"type": "Work"}}}, reg)
    run_id = (await engine.trigger("f")).run_id
    assert run_id is not None
    (lost,) = dispatcher.take()
    clock.advance(timedelta(seconds=61))
    assert (await engine.reconcile(SETTINGS)).redispatched == 1
    (again,) = dispatcher.take()
    assert again.seq == lost.seq + 1
    clock.advance(timedelta(seconds=30))
    assert not (await engine.reconcile(SETTINGS)).anything
    assert await engine.run_step(lost) == ClaimOutcome.STALE
    assert await engine.run_step(again) == ClaimOutcome.ACQUIRED
    assert (await engine.get_run(run_id)).status == "Succeeded"


async def test_a_waiting_signal_step_is_left_alone(store: Store) -> None:
    engine, dispatcher, clock = engine_on(
        store,
        {"steps": {"wait": {"type": "WaitForSignal", "inputs": {"signalName": "go"}}}},
        HandlerRegistry(),
    )
    run_id = (await engine.trigger("f")).run_id
    assert run_id is not None
    (envelope,) = dispatcher.take()
    await engine.run_step(envelope)
    for _ in range(3):
        clock.advance(timedelta(minutes=10))
        assert not (await engine.reconcile(SETTINGS)).anything
    assert dispatcher.take() == []
    assert await engine.deliver_signal(run_id, "go", {"n": 1}) == "Delivered"
    run = await engine.get_run(run_id)
    assert run.status == "Succeeded" and run.steps["wait"].output == {"n": 1}


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


UNSTORABLE = {
    "set": {1, 2},
    "nan": {"ratio": float("nan")},
    "deep": nested(5000),
    "too-large": "x" * (limits.MAX_STORED_JSON_BYTES + 1),
}


@pytest.mark.parametrize("kind", sorted(UNSTORABLE))
async def test_an_unstorable_output_fails_the_step_once(store: Store, kind: str) -> None:
    reg = HandlerRegistry()
    calls: list[int] = []

    @reg.handler("Bad")
    async def bad(inputs: Any) -> Any:
        calls.append(1)
        return UNSTORABLE[kind]

    retry = {"maxAttempts": 3, "initialIntervalSeconds": 1}
    engine, dispatcher, clock = engine_on(
        store, {"steps": {"bad": {"type": "Bad", "retry": retry}}}, reg
    )
    run_id = (await engine.trigger("f")).run_id
    assert run_id is not None
    (envelope,) = dispatcher.take()
    assert await engine.run_step(envelope) == ClaimOutcome.ACQUIRED
    clock.advance(timedelta(minutes=10))
    assert not (await engine.reconcile(SETTINGS)).anything
    assert dispatcher.take() == []
    run = await engine.get_run(run_id)
    assert run.status == "Failed"
    assert run.steps["bad"].error["type"] == "OutputNotStorable"
    assert calls == [1]
    json.dumps(run.to_dict(), allow_nan=False)


async def test_a_nul_in_an_error_message_is_stored(store: Store) -> None:
    reg = HandlerRegistry()

    @reg.handler("Bad")
    async def bad(inputs: Any) -> Any:
        raise StepError("card\x00declined", retryable=False)

    engine, dispatcher, _ = engine_on(store, {"steps": {"bad": {"type": "Bad"}}}, reg)
    run_id = (await engine.trigger("f")).run_id
    assert run_id is not None
    (envelope,) = dispatcher.take()
    await engine.run_step(envelope)
    run = await engine.get_run(run_id)
    assert run.status == "Failed"
    assert run.steps["bad"].error["message"] == "card\\x00declined"
    events = await store.list_events(run_id)
    assert any("card\\x00declined" in e.message for e in events)
