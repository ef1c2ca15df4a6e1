"""The in-process runtime applies the step consumer's verdicts: a store outage re-queues the
message after a back-off (it used to be logged and dropped, stalling the run until a lease
lapsed), poison is kept as a bounded list of dead letters, and a worker survives its consumer."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from floworch.engine.consumer import COMPLETE, Delivery, Retry, RetryPolicy, Verdict
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.reconciler import ReconcilerSettings
from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings
from floworch.model import load_manifest
from floworch.runtime.memory import Body, InProcessDispatcher
from floworch.storage.memory import MemoryStore
from floworch.testing.faulty_store import StoreFaults, faulty_store

NO_RECONCILER = EmbeddedSettings(
    tick=timedelta(hours=1),
    reconciler=ReconcilerSettings(unsent_grace=timedelta(hours=1), lost_after=timedelta(hours=1)),
    cron=False,
    retry=RetryPolicy(first_delay=timedelta(milliseconds=50)),
)


def _host(store: Any, calls: list[str], **options: Any) -> EmbeddedHost:
    reg = HandlerRegistry()

    @reg.handler("Work")
    async def work(inputs: Any) -> Any:
        calls.append("work")
        return "done"

    manifest = load_manifest({"id": "f", "version": "1", "steps": {"a": {"type": "Work"}}})
    return EmbeddedHost(store=store, flows=[manifest], handlers=reg, **options)


async def test_a_store_outage_on_a_step_message_retries_it_instead_of_dropping_it() -> None:
    faults = StoreFaults()
    calls: list[str] = []
    # The reconciler is out of the picture: only the runtime's own retry can finish the run.
    async with _host(faulty_store(MemoryStore(), faults), calls, settings=NO_RECONCILER) as host:
        faults.refuse_claims = 2
        started = await host.engine.trigger("f")
        assert started.run_id is not None
        run = await host.engine.wait_for_run(started.run_id, timeout=30)
    assert run.status == "Succeeded"
    assert calls == ["work"]
    assert faults.calls_refused == 2
    assert host.dispatcher.retried == 2


async def test_poison_is_kept_as_dead_letters_counted_and_logged_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    host = _host(MemoryStore(), calls, settings=replace(NO_RECONCILER, dead_letter_limit=2))
    async with host:
        for n in range(3):
            host.dispatcher.deliver(b"junk", message_id=f"junk-{n}")
        await host.dispatcher.wait_idle()
    assert host.dispatcher.dead_lettered == 3
    assert [(d.message_id, d.reason) for d in host.dead_letters] == [
        ("junk-1", "EnvelopeInvalid"),
        ("junk-2", "EnvelopeInvalid"),
    ]
    lines = [r.getMessage() for r in caplog.records if r.name == "floworch.runtime.memory"]
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert lines[0].startswith("dead-lettered step message junk-0: EnvelopeInvalid: ")
    assert host.dispatcher.retried == 0 and calls == []


async def test_a_worker_survives_a_consumer_that_raises_anything() -> None:
    dispatcher = InProcessDispatcher(concurrency=1, policy=RetryPolicy(unexpected_tries=1))
    seen: list[bytes] = []

    async def consumer(body: Body, delivery: Delivery) -> Verdict:
        assert isinstance(body, bytes)
        seen.append(body)
        if body == b"exit":
            raise SystemExit(3)
        if body == b"cancel":
            raise asyncio.CancelledError()
        return COMPLETE

    dispatcher.start(consumer)
    try:
        for body in (b"exit", b"cancel", b"fine"):
            dispatcher.deliver(body, message_id=body.decode())
        await asyncio.wait_for(dispatcher.wait_idle(), 10)
    finally:
        await dispatcher.stop()
    assert seen == [b"exit", b"cancel", b"fine"]
    assert [(d.message_id, d.reason) for d in dispatcher.dead_letters] == [
        ("exit", "UnexpectedError"),
        ("cancel", "UnexpectedError"),
    ]


async def test_a_retry_waits_its_back_off_and_counts_as_busy() -> None:
    dispatcher = InProcessDispatcher()
    attempts: list[Delivery] = []
    release = asyncio.Event()

    async def consumer(body: Body, delivery: Delivery) -> Verdict:
        attempts.append(delivery)
        if delivery.attempt == 1:
            return Retry(timedelta(milliseconds=50), "not yet")
        release.set()
        return COMPLETE

    dispatcher.start(consumer)
    try:
        dispatcher.deliver(b"x", message_id="m")
        await asyncio.wait_for(release.wait(), 10)
        await asyncio.wait_for(dispatcher.wait_idle(), 10)
    finally:
        await dispatcher.stop()
    assert [d.attempt for d in attempts] == [1, 2]
    assert attempts[1].failing_for > timedelta(0)
    assert dispatcher.retrying == 0 and dispatcher.retried == 1
