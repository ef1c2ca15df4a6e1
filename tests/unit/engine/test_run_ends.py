"""wait_for_run wakes when the run ends in this process, not at its next poll (issue 15: most of
a one-step run's latency on the embedded host was the 20 ms poll). The poll interval here is an
hour: a waiter that still depended on it would hang until the test's own timeout."""

from __future__ import annotations

import asyncio

from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.embedded import EmbeddedHost
from floworch.model import load_manifest
from floworch.storage.memory import MemoryStore
from floworch.testing.consumer_contract import eventually
from floworch.testing.host import FlowTestHost

from .support import flow

AN_HOUR = 3600.0
WAITING = flow({"w": {"type": "WaitForSignal", "inputs": {"signalName": "go"}}})


async def test_a_signal_that_ends_the_run_wakes_its_waiter() -> None:
    async with FlowTestHost([WAITING], HandlerRegistry()) as host:
        run_id = await host.trigger("f")
        await host.wait_step(run_id, "w", status="Waiting")
        waiter = asyncio.create_task(
            host.engine.wait_for_run(run_id, timeout=AN_HOUR, poll_interval=AN_HOUR)
        )

        async def watched() -> bool:
            return host.engine.core.run_ends.watching(run_id) == 1

        await eventually(watched, timeout=30, what="the waiter to watch the run")
        assert await host.signal(run_id, "go", {"ok": True}) == "Delivered"
        run = await asyncio.wait_for(waiter, 30)
        assert run.status == "Succeeded"
        assert host.engine.core.run_ends.watching(run_id) == 0


async def test_cancelling_a_run_wakes_its_waiters() -> None:
    async with FlowTestHost([WAITING], HandlerRegistry()) as host:
        run_id = await host.trigger("f")
        await host.wait_step(run_id, "w", status="Waiting")
        waiters = [
            asyncio.create_task(
                host.engine.wait_for_run(run_id, timeout=AN_HOUR, poll_interval=AN_HOUR)
            )
            for _ in range(2)
        ]

        async def watched() -> bool:
            return host.engine.core.run_ends.watching(run_id) == 2

        await eventually(watched, timeout=30, what="both waiters to watch the run")
        assert await host.cancel(run_id)
        runs = await asyncio.wait_for(asyncio.gather(*waiters), 30)
        assert [r.status for r in runs] == ["Cancelled", "Cancelled"]
        assert host.engine.core.run_ends.watching(run_id) == 0


async def test_a_finished_run_returns_at_once_and_leaves_no_watcher() -> None:
    async with FlowTestHost([flow({"a": {"type": "Delay", "inputs": {"delaySeconds": 0}}})]) as h:
        run_id = await h.trigger("f")
        await h.wait(run_id)
        run = await asyncio.wait_for(
            h.engine.wait_for_run(run_id, timeout=AN_HOUR, poll_interval=AN_HOUR), 30
        )
        assert run.status == "Succeeded"
        assert h.engine.core.run_ends.watching(run_id) == 0


async def test_an_in_process_host_polls_for_ends_elsewhere_only_twice_a_second() -> None:
    # Runs this host starts end in this process and wake their waiters at once; the poll only
    # finds ends made by another process, so it need not read the run every 20 ms.
    store = MemoryStore()
    flows = [load_manifest(WAITING)]
    async with EmbeddedHost(store=store, flows=flows, handlers=HandlerRegistry()) as host:
        assert host.engine.default_poll_interval == 0.5
    # A dispatcher of its own (here a wrapped one, as tests' faulty transports are) may send
    # elsewhere: such an engine keeps polling every 20 ms.
    async with EmbeddedHost(
        store=MemoryStore(), flows=flows, handlers=HandlerRegistry(), dispatcher=lambda d: d
    ) as wrapped:
        assert wrapped.engine.default_poll_interval == 0.02
