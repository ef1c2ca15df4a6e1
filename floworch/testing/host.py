"""FlowTestHost: run flows in a test, with a clock you move by hand.

``trigger``, ``signal``, ``cancel``, ``retry_step`` and ``rerun`` return as soon as the engine
has recorded the change; the steps run in the background. ``wait`` waits for the run's end,
``wait_step`` for one step, and ``idle`` for every due step.

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
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from floworch.cli.loading import flow_files, import_handlers
from floworch.engine.engine import Engine
from floworch.engine.flows import FlowRegistry
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import ManualClock
from floworch.engine.views import RunState, StepState
from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings
from floworch.model import FlowDefinition, FlowManifest, load_flows_from_path, load_manifest
from floworch.storage.memory import MemoryStore
from floworch.storage.port import Store

FlowLike = FlowManifest | FlowDefinition | Mapping[str, Any] | str | os.PathLike[str]


def _existing_path(source: str | os.PathLike[str]) -> Path | None:
    try:
        path = Path(source)
        return path if path.exists() else None
    except (OSError, ValueError):  # manifest text too long, or with NUL, for a path
        return None


def _load(
    flows: Iterable[FlowLike], *, import_handlers_beside: bool
) -> list[FlowManifest | FlowDefinition]:
    """The flows, with the handler modules beside manifest paths imported (as floworch run)."""
    loaded: list[FlowManifest | FlowDefinition] = []
    for flow in flows:
        if isinstance(flow, FlowManifest | FlowDefinition):
            loaded.append(flow)
            continue
        path = None if isinstance(flow, Mapping) else _existing_path(flow)
        if path is None:
            loaded.append(load_manifest(flow))
            continue
        files, handler_files = flow_files(path)
        if import_handlers_beside:
            for handler_file in handler_files:
                import_handlers(str(handler_file))
        for file in files:
            loaded.extend(load_flows_from_path(file))
    return loaded


class FlowTestHost:
    """An embedded engine on a memory store (or one you pass) with a manual clock.

    Args:
        flows: manifests (models, dicts, JSON/YAML text), compiled definitions, or paths of
            manifest files, Python flow files or flow folders, loaded as ``floworch run`` loads
            them: a ``handlers.py`` beside a manifest (or ``handlers.py`` and ``*_handlers.py``
            in a folder) is imported when no ``handlers`` registry is given.
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
        registry = FlowRegistry(_load(flows, import_handlers_beside=handlers is None))
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
        """Starts a run and returns its id as soon as it is started (the first run's id for a
        repeated idempotency key). The run goes on in the background: :meth:`wait` for its end,
        :meth:`idle` for every due step to be processed, or cancel, signal and inspect it while
        its handlers run.

        Raises:
            RuntimeError: the flow is disabled.
        """
        result = await self.engine.trigger(flow_id, trigger_key, body, headers, idempotency_key)
        if result.run_id is None:
            raise RuntimeError(f"flow {flow_id!r} is disabled")
        return result.run_id

    async def signal(self, run_id: str, name: str, payload: Any = None) -> str:
        """Delivers a signal; returns Delivered, Buffered (no step waits for it yet: the first to
        wait gets it), AlreadyDelivered or NotFound. The steps it resumes run in the background."""
        return await self.engine.deliver_signal(run_id, name, payload)

    async def wait(self, run_id: str, timeout: float = 30.0) -> RunState:
        """Waits (real time) until the run is terminal and returns it."""
        return await self.engine.wait_for_run(run_id, timeout=timeout, poll_interval=0.005)

    async def wait_step(
        self,
        run_id: str,
        step_key: str,
        *,
        status: str | None = None,
        timeout: float = 30.0,
    ) -> StepState:
        """Waits (real time) until a step exists and is terminal, or has ``status`` if given,
        and returns it; other steps may still be running.

        Raises:
            TimeoutError: it did not get there within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            step = (await self.engine.get_run(run_id)).steps.get(step_key)
            if step is not None and (
                step.status == status if status is not None else step.status.is_terminal
            ):
                return step
            if loop.time() >= deadline:
                now = step.status if step is not None else "not started"
                raise TimeoutError(f"step {step_key!r} of run {run_id} is {now} after {timeout:g}s")
            await asyncio.sleep(0.005)

    async def get(self, run_id: str) -> RunState:
        """The run as it is now."""
        return await self.engine.get_run(run_id)

    async def cancel(self, run_id: str, reason: str = "cancelled by test") -> bool:
        """Cancels a run (its open steps are Cancelled at once and running handlers are told);
        False when it had already finished."""
        return await self.engine.cancel_run(run_id, reason)

    async def retry_step(self, run_id: str, step_key: str) -> None:
        """Retries a failed step; the retry runs in the background."""
        await self.engine.retry_step(run_id, step_key)

    async def rerun(self, run_id: str) -> str:
        """Starts a new run from a run's trigger data; returns the new run id."""
        result = await self.engine.rerun(run_id)
        assert result.run_id is not None
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
        """Waits until every due message has been processed (handlers included; timers not yet
        due stay pending: :meth:`advance` fires them)."""
        for _ in range(3):
            await asyncio.sleep(0)
            await self._host.dispatcher.wait_idle()
            await asyncio.sleep(0.001)
            await self._host.dispatcher.wait_idle()
