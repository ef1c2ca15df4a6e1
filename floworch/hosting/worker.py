"""The worker host: the engine on the Service Bus runtime, as a long-running process.

One pump per enabled flow's subscription on the steps topic, one on the cron queue (the cron
hub), one per flow's subscription on the triggers topic plus one on its catch-all ``unrouted``,
one per queue a flow's ServiceBus trigger names; a background loop that reconciles, keeps cron
chains seeded, and starts or stops subscriptions as flows are enabled, disabled or added; a
health endpoint. It is
what ``floworch worker`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from floworch.api import ApiOptions, AuthConfig, Readiness, create_app
from floworch.engine.engine import Engine, verify_handlers
from floworch.engine.executor import abandoned_line
from floworch.engine.flows import FlowRegistry
from floworch.engine.handlers import HandlerRegistry, default_registry
from floworch.engine.ports import Clock, Dispatcher, SystemClock
from floworch.engine.reconciler import ReconcilerSettings
from floworch.errors import FlowError
from floworch.hosting.http import HttpServer
from floworch.model import FlowDefinition, FlowManifest
from floworch.runtime.servicebus.config import ServiceBusConnection, ServiceBusSettings
from floworch.runtime.servicebus.connection import ClientHandle, open_client
from floworch.runtime.servicebus.cron import CronHub
from floworch.runtime.servicebus.dispatcher import ServiceBusDispatcher
from floworch.runtime.servicebus.names import UNROUTED_SUBSCRIPTION, subscription_name
from floworch.runtime.servicebus.pump import MessageHandler, MessagePump, Source
from floworch.runtime.servicebus.steps import StepMessageHandler
from floworch.runtime.servicebus.triggers import TriggerMessageHandler
from floworch.storage.port import Store

log = logging.getLogger("floworch.hosting.worker")

FlowSource = Callable[[], Iterable[FlowManifest | FlowDefinition]]
"""Re-reads the flows (a manifest directory); new flows found are added while running."""


@dataclass(frozen=True)
class WorkerSettings:
    """Options of the worker host.

    Attributes:
        servicebus: entity names, concurrency, prefetch, lock renewal.
        grace: seconds in-flight steps get to finish on shutdown before being abandoned.
        handler_grace: then, how long handlers that ignored the cancellation get to return
            before they are left behind (logged in one line; the process can exit).
        tick: how often the reconciler and the cron chain check run.
        refresh: how often flow enablement (and the flow source) is re-read.
        reconciler: reconciler thresholds.
        cron: run the cron hub.
        triggers: receive trigger messages (the triggers topic, flows' own trigger queues).
        lease: step lease length (renewed while a handler runs).
        health_host / health_port: where the HTTP API (with ``/healthz``, ``/readyz`` and
            ``/status``) is served (port None: off; 0: a free port).
        api_auth: who may call the API (hosts build it with ``floworch.hosting.http.auth_for``).
        webhook_secrets: HMAC secrets of webhook triggers by (flow id, trigger key).
        api: API options (body limit, streams).
    """

    servicebus: ServiceBusSettings = field(default_factory=ServiceBusSettings)
    grace: float = 30.0
    handler_grace: timedelta = timedelta(seconds=1)
    tick: timedelta = timedelta(seconds=2)
    refresh: timedelta = timedelta(seconds=3)
    reconciler: ReconcilerSettings = field(
        default_factory=lambda: ReconcilerSettings(
            unsent_grace=timedelta(seconds=5), lost_after=timedelta(seconds=60)
        )
    )
    cron: bool = True
    triggers: bool = True
    lease: timedelta = timedelta(seconds=30)
    health_host: str = "127.0.0.1"
    health_port: int | None = None
    api_auth: AuthConfig = field(default_factory=AuthConfig.none)
    webhook_secrets: Mapping[tuple[str, str], str] = field(default_factory=dict)
    api: ApiOptions = field(default_factory=ApiOptions)


class WorkerHost:
    """Runs flows on Service Bus. ``await host.start()`` ... ``await host.stop()``.

    Args:
        store: the shared SQL store.
        flows: the flows this worker runs.
        connection: the namespace (connection string or managed identity).
        handlers: step handlers (default: the ``@floworch.handler`` registry).
        settings: worker options.
        clock: time source.
        flow_source: re-read on every refresh to pick up flows added while running.
        dispatcher: a dispatcher to use instead of the Service Bus one (tests wrap it).
        before_start: called with the open client before anything receives (topology apply).
    """

    def __init__(
        self,
        *,
        store: Store,
        flows: FlowRegistry | Iterable[FlowManifest | FlowDefinition],
        connection: ServiceBusConnection,
        handlers: HandlerRegistry | None = None,
        settings: WorkerSettings | None = None,
        clock: Clock | None = None,
        flow_source: FlowSource | None = None,
        dispatcher: Callable[[Dispatcher], Dispatcher] | None = None,
    ) -> None:
        self.settings = settings or WorkerSettings()
        self._connection = connection
        self._handle: ClientHandle = open_client(connection, self.settings.servicebus.retry)
        self.sb_dispatcher = ServiceBusDispatcher(
            self._handle.client, topic=self.settings.servicebus.steps_topic
        )
        self._handlers = handlers if handlers is not None else default_registry
        self.engine = Engine(
            store=store,
            dispatcher=dispatcher(self.sb_dispatcher) if dispatcher else self.sb_dispatcher,
            flows=flows,
            handlers=self._handlers,
            clock=clock or SystemClock(),
            lease=self.settings.lease,
        )
        self.cron = CronHub(
            self.engine, self._handle.client, queue=self.settings.servicebus.cron_queue
        )
        topic = self.settings.servicebus.triggers_topic
        self.trigger_handler = TriggerMessageHandler(self.engine, topic=topic)
        self.unrouted_handler = TriggerMessageHandler(self.engine, topic=topic, unrouted=True)
        self._flow_source = flow_source
        self.step_pumps: dict[str, MessagePump] = {}
        self.queue_pumps: dict[str, MessagePump] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._started = False
        self._last_pass_ok = False
        self.http: HttpServer | None = None

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def health(self) -> HttpServer | None:
        """The HTTP server of the API and probes (None without ``health_port``)."""
        return self.http

    async def dead_lettered(self) -> int:
        """Step and trigger messages this worker dead-lettered since it started."""
        pumps = [*self.step_pumps.values(), *self.queue_pumps.values()]
        return sum(p.stats.dead_lettered for p in pumps)

    @property
    def client(self) -> Any:
        """The long-lived ``ServiceBusClient``."""
        return self._handle.client

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Stores the flows, reconciles once, seeds cron chains and starts receiving."""
        await self.engine.sync_flows()
        await self.engine.reconcile(self.settings.reconciler)
        sb = self.settings.servicebus
        self._start_trigger_pumps()
        if self.settings.cron:
            await self.cron.ensure_chains()
            self._start_queue_pump(sb.cron_queue, self.cron)
        await self._refresh_flows()
        if self.settings.health_port is not None:
            app = create_app(
                self.engine,
                auth=self.settings.api_auth,
                readiness=self.readiness,
                webhook_secrets=self.settings.webhook_secrets,
                options=self.settings.api,
                dead_letters=self.dead_lettered,
            )
            self.http = HttpServer(
                app, host=self.settings.health_host, port=self.settings.health_port
            )
            await self.http.start()
        self._stopping.clear()
        self._started = True
        self._last_pass_ok = True
        self._loop_task = asyncio.create_task(self._background(), name="floworch-worker-loop")
        log.info(
            "worker %s receiving %d flow subscription(s) on %s via %s",
            self.engine.core.owner,
            len(self.step_pumps),
            sb.steps_topic,
            self._connection.describe(),
        )

    async def wait_receiving(self, timeout: float = 30.0) -> None:
        """Waits until every pump's receiver link is open."""
        pumps = [*self.step_pumps.values(), *self.queue_pumps.values()]
        await asyncio.gather(*(p.wait_receiving(timeout) for p in pumps))

    async def stop(self) -> None:
        """Stops receiving, gives in-flight steps the grace period, abandons the rest (Service
        Bus redelivers their messages), closes. Handlers that ignore the cancellation are left
        behind after ``handler_grace``, with one line saying so."""
        self._stopping.set()
        self._started = False
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        pumps = [*self.step_pumps.values(), *self.queue_pumps.values()]
        self.step_pumps, self.queue_pumps = {}, {}
        await asyncio.gather(*(p.stop(self.settings.grace) for p in pumps))
        left = await self.engine.core.executor.wait_abandoned(self.settings.handler_grace)
        if left:
            log.warning(abandoned_line(left))
        await self.cron.close()
        await self.sb_dispatcher.close()
        await self._handle.close()
        if self.http is not None:
            await self.http.stop()
            self.http = None

    async def __aenter__(self) -> WorkerHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- background ------------------------------------------------------------------------------

    async def _background(self) -> None:
        tick = self.settings.tick.total_seconds()
        refresh_every = max(1, round(self.settings.refresh.total_seconds() / tick))
        passes = 0
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), tick)
            if self._stopping.is_set():
                return
            passes += 1
            try:
                await self.engine.reconcile(self.settings.reconciler)
                if self.settings.cron:
                    await self.cron.ensure_chains()
                if passes % refresh_every == 0:
                    await self._refresh_flows()
                self._last_pass_ok = True
            except asyncio.CancelledError:
                raise
            except Exception:
                self._last_pass_ok = False
                log.exception("worker background pass failed; trying again in %.1f s", tick)

    async def refresh(self) -> None:
        """Applies flow enablement and new flows now (the loop also does it periodically)."""
        await self._refresh_flows()

    async def _refresh_flows(self) -> None:
        if self._flow_source is not None:
            await self._add_new_flows()
            self._start_trigger_pumps()
        stored = {record.flow_id: record.enabled for record in await self.store.list_flows()}
        for flow in self.engine.flows:
            enabled = stored.get(flow.id, flow.manifest.enabled)
            pump = self.step_pumps.get(flow.id)
            if enabled and pump is None:
                self._start_step_pump(flow.id)
                log.info("flow %s enabled: receiving %s", flow.id, subscription_name(flow.id))
            elif not enabled and pump is not None:
                del self.step_pumps[flow.id]
                await pump.stop(self.settings.grace)
                log.info("flow %s disabled: stopped receiving its step messages", flow.id)

    async def _add_new_flows(self) -> None:
        assert self._flow_source is not None
        try:
            found = list(self._flow_source())
        except FlowError as exc:
            log.error("re-reading the flows failed; keeping the ones loaded: %s", exc)
            return
        for item in found:
            flow_id = item.id
            if self.engine.flows.find(flow_id) is not None:
                continue
            candidate = FlowRegistry([item])
            try:
                verify_handlers(candidate, self._handlers)
            except FlowError as exc:
                log.error("new flow %s not started: %s", flow_id, exc)
                continue
            self.engine.flows.add(item)
            await self.engine.sync_flows()
            log.info("new flow %s found; starting it", flow_id)

    def _start_step_pump(self, flow_id: str) -> None:
        sb = self.settings.servicebus
        source = Source(topic=sb.steps_topic, subscription=subscription_name(flow_id))
        self.step_pumps[flow_id] = self._start_pump(source, StepMessageHandler(self.engine))

    def _start_queue_pump(self, queue: str, handler: MessageHandler) -> None:
        self.queue_pumps[queue] = self._start_pump(Source(queue=queue), handler)

    def _start_pump(self, source: Source, handler: MessageHandler) -> MessagePump:
        sb = self.settings.servicebus
        pump = MessagePump(
            self.client,
            source,
            handler,
            concurrency=sb.concurrency,
            prefetch=sb.prefetch,
            max_lock_renewal=sb.max_lock_renewal,
            receive_wait=sb.receive_wait,
            retry_in_place=sb.retry_in_place,
            max_delivery_count=sb.max_delivery_count,
            telemetry=self.engine.core.telemetry,
        )
        pump.start()
        return pump

    def _start_trigger_pumps(self) -> None:
        """Receives the triggers of every flow (enabled or not: a disabled flow's triggers are
        dead-lettered as FlowDisabled, as the engine refuses them) and the catch-all; starts
        only what is not running yet."""
        if not self.settings.triggers:
            return
        topic = self.settings.servicebus.triggers_topic
        wanted: list[tuple[Source, MessageHandler]] = [
            (Source(topic=topic, subscription=UNROUTED_SUBSCRIPTION), self.unrouted_handler)
        ]
        for flow in self.engine.flows:
            source = Source(topic=topic, subscription=subscription_name(flow.id))
            wanted.append((source, self.trigger_handler))
            for trigger in flow.triggers.values():
                queue = getattr(trigger, "queue", None)
                if trigger.type == "ServiceBus" and queue and queue.casefold() != topic.casefold():
                    wanted.append((Source(queue=queue), self.trigger_handler))
        for source, handler in wanted:
            if str(source) not in self.queue_pumps:
                self.queue_pumps[str(source)] = self._start_pump(source, handler)

    # -- health ----------------------------------------------------------------------------------

    async def status(self) -> tuple[bool, dict[str, Any]]:
        """Readiness and a JSON-able report: pumps receiving, store reachable, last pass ok."""
        store_ok = True
        store_error = None
        try:
            await self.store.list_flows()
        except Exception as exc:
            store_ok, store_error = False, f"{type(exc).__name__}: {exc}"
        pumps = {
            str(p.source): {
                "receiving": p.receiving,
                "inflight": p.inflight,
                **vars(p.stats),
            }
            for p in [*self.step_pumps.values(), *self.queue_pumps.values()]
        }
        ready = self._started and store_ok and all(p["receiving"] for p in pumps.values())
        report: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "worker": self.engine.core.owner,
            "store": "ok" if store_ok else store_error,
            "lastBackgroundPassOk": self._last_pass_ok,
            "flows": sorted(self.step_pumps),
            "pumps": pumps,
            "sent": self.sb_dispatcher.sent,
            "cronFired": self.cron.fired,
            "triggersStarted": self.trigger_handler.started + self.unrouted_handler.started,
        }
        return ready, report

    async def readiness(self) -> Readiness:
        """``/readyz``: the status report, with a reason naming what is not ready."""
        ready, report = await self.status()
        reason = None
        if not ready:
            if not self._started:
                reason = "the worker is not started (or is stopping)"
            elif report["store"] != "ok":
                reason = f"the database does not answer: {report['store']}"
            else:
                idle = sorted(name for name, p in report["pumps"].items() if not p["receiving"])
                reason = "not receiving from " + ", ".join(idle)
                reason += (
                    " (if an entity is missing, run `floworch topology apply` or start the "
                    "worker with --auto-create-topology)"
                )
        return Readiness(ready, reason, report)
