"""FlowTestHost: run flows in a test, with a clock you move by hand.

Example::

    async with FlowTestHost(flows=[manifest], handlers=registry) as host:
        run_id = await host.trigger("order-fulfilment", body={"customerId": 7})
        await host.signal(run_id, "approval", {"approved": True})
        run = await host.wait(run_id)
        assert run.status == "Succeeded"
        assert run.steps["ship"].attempts == 1

``advance(timedelta)`` moves the clock and fires every delay, retry, poll, signal timeout, run
timeout and cron tick that falls due on the way, in order, without real waiting. Handler step
timeouts (``timeoutSeconds``) run on real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from floworch.engine.engine import Engine
from floworch.engine.flows import FlowRegistry
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import ManualClock
from floworch.engine.views import RunState
from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings
from floworch.model import FlowDefinition, FlowManifest, load_manifest
from floworch.storage.memory import MemoryStore
from floworch.storage.port import Store

FlowLike = FlowManifest | FlowDefinition | Mapping[str, Any] | str


class FlowTestHost:
    """An embedded engine on a memory store (or one you pass) with a manual clock.

    Args:
        flows: manifests (models, dicts, JSON/YAML text or paths) or compiled definitions.
        handlers: the handler registry (default: the one ``@floworch.handler`` fills).
        store: a store to use instead of a fresh MemoryStore.
        start: the clock's starting time (default: now).
        concurrency: steps running at once.
    """

    def __init__(
        self,
        flows: Iterable[FlowLike],
        handlers: HandlerRegistry | None = None,
        *,
        store: Store | None = None,
        start: datetime | None = None,
        concurrency: int = 8,
    ) -> None:
        registry = FlowRegistry(
            f if isinstance(f, FlowManifest | FlowDefinition) else load_manifest(f) for f in flows
        )
        self.clock = ManualClock(start or datetime.now(UTC))
        self._host = EmbeddedHost(
            store=store or MemoryStore(),
            flows=registry,
            handlers=handlers,
            clock=self.clock,
            settings=EmbeddedSettings(concurrency=concurrency, tick=timedelta(hours=1)),
        )

    @property
    def engine(self) -> Engine:
        """The engine, for anything the host does not wrap."""
        return self._host.engine

    @property
    def store(self) -> Store:
        """The store."""
        return self._host.store

    async def __aenter__(self) -> FlowTestHost:
        await self._host.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._host.stop()

    async def trigger(
        self,
        flow_id: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        trigger_key: str | None = None,
    ) -> str:
        """Starts a run; returns its id (the first run's id for a repeated idempotency key).

        Raises:
            RuntimeError: the flow is disabled.
        """
        result = await self.engine.trigger(flow_id, trigger_key, body, headers, idempotency_key)
        if result.run_id is None:
            raise RuntimeError(f"flow {flow_id!r} is disabled")
        await self.idle()
        return result.run_id

    async def signal(self, run_id: str, name: str, payload: Any = None) -> str:
        """Delivers a signal; returns Delivered, Buffered, AlreadyDelivered or NotFound."""
        outcome = await self.engine.deliver_signal(run_id, name, payload)
        await self.idle()
        return outcome

    async def wait(self, run_id: str, timeout: float = 30.0) -> RunState:
        """Waits (real time) until the run is terminal and returns it."""
        return await self.engine.wait_for_run(run_id, timeout=timeout, poll_interval=0.005)

    async def get(self, run_id: str) -> RunState:
        """The run as it is now."""
        return await self.engine.get_run(run_id)

    async def cancel(self, run_id: str, reason: str = "cancelled by test") -> bool:
        """Cancels a run."""
        done = await self.engine.cancel_run(run_id, reason)
        await self.idle()
        return done

    async def retry_step(self, run_id: str, step_key: str) -> None:
        """Retries a failed step."""
        await self.engine.retry_step(run_id, step_key)
        await self.idle()

    async def rerun(self, run_id: str) -> str:
        """Starts a new run from a run's trigger data; returns the new run id."""
        result = await self.engine.rerun(run_id)
        assert result.run_id is not None
        await self.idle()
        return result.run_id

    async def advance(self, delta: timedelta) -> None:
        """Moves the clock forward, firing what falls due on the way in time order."""
        target = self.clock.now() + delta
        while True:
            await self.idle()
            timers = [
                t
                for t in (self._host.dispatcher.next_timer(), await self._host.next_cron_fire())
                if t is not None
            ]
            upcoming = min(timers, default=None)
            if upcoming is None or upcoming > target:
                break
            self.clock.set(upcoming)
            await self._host.tick()
        self.clock.set(target)
        await self._host.tick()
        await self.idle()

    async def idle(self) -> None:
        """Waits until every due message has been processed."""
        for _ in range(3):
            await asyncio.sleep(0)
            await self._host.dispatcher.wait_idle()
            await asyncio.sleep(0.001)
            await self._host.dispatcher.wait_idle()
