"""The engine behind a Function App, built on the first invocation (not at import: indexing must
stay fast, and the host may index without ever invoking).

One :class:`FunctionsRuntime` per app object: the store, the engine's own Service Bus client and
sender, the step consumer, the cron hub and the trigger handler, the API app, and the background
pass that the worker's loop does (reconcile, seed cron chains), run under a SQL lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from floworch.engine.consumer import RetryPolicy
from floworch.hosting.functions.settings import (
    FunctionsConfigError,
    FunctionsOptions,
    FunctionsSettings,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from floworch.engine.consumer import StepConsumer
    from floworch.engine.engine import Engine
    from floworch.engine.handlers import HandlerRegistry
    from floworch.engine.ports import Dispatcher
    from floworch.model import FlowManifest
    from floworch.runtime.servicebus.connection import ClientHandle
    from floworch.runtime.servicebus.cron import CronHub
    from floworch.runtime.servicebus.dispatcher import ServiceBusDispatcher
    from floworch.runtime.servicebus.triggers import TriggerMessageHandler
    from floworch.storage.port import Store

log = logging.getLogger("floworch.hosting.functions")

TELEMETRY_SERVICE = "floworch-functions"
"""``service.name`` of the Function App's telemetry (Application Insights' cloud role)."""
BACKGROUND_LEASE = "floworch-background"
"""The SQL lease the background pass runs under (one instance of one app at a time)."""


class FunctionsRuntime:
    """Everything the functions of one app share; :meth:`start` builds it once.

    Args:
        settings: the app settings.
        flows: the flows this app runs (loaded at import by ``function_app.py``).
        handlers: their handlers.
        options: host options.
        store: a store to use instead of opening ``FLOWORCH_DB_URL`` (tests, the local runner).
        dispatcher: wraps the engine's dispatcher (tests duplicate or hold messages with it).
    """

    def __init__(
        self,
        settings: FunctionsSettings,
        flows: Sequence[FlowManifest],
        handlers: HandlerRegistry,
        options: FunctionsOptions,
        *,
        store: Store | None = None,
        dispatcher: Callable[[Dispatcher], Dispatcher] | None = None,
    ) -> None:
        self.settings = settings
        self.flows = list(flows)
        self.handlers = handlers
        self.options = options
        self._given_store = store
        self._wrap_dispatcher = dispatcher
        self.policy = RetryPolicy()
        self._lock: asyncio.Lock | None = None
        self._started = False
        self._engine: Engine | None = None
        self._handle: ClientHandle | None = None
        self._sender: ServiceBusDispatcher | None = None
        self._consumer: StepConsumer | None = None
        self._cron: CronHub | None = None
        self._triggers: TriggerMessageHandler | None = None
        self._unrouted: TriggerMessageHandler | None = None
        self._asgi: ASGIApp | None = None
        self.dead_lettered = 0
        """Messages this instance dead-lettered (SDK-type binding) or gave up on (auto)."""
        self.held = 0
        """Retries in place (the store or Service Bus was unavailable) in this instance."""
        self.background_passes = 0
        """Background passes this instance ran (it held the lease)."""

    # -- start-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Opens the store and the Service Bus client, builds the engine, stores the flows.

        Raises:
            FunctionsConfigError: a required app setting is missing.
            StorageError: the database is unreachable or not migrated (``floworch db upgrade``).
        """
        if self._started:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._started:
                await self._build()
                self._started = True

    def check_config(self) -> None:
        """Raises FunctionsConfigError when a required app setting is missing (before any
        message is judged: a deployment mistake is not the message's fault)."""
        if self.settings.connection is None:
            raise FunctionsConfigError(
                "FLOWORCH_SERVICEBUS_NAMESPACE is not set: the engine cannot send step messages "
                "(set it to <namespace>.servicebus.windows.net; locally, set ServiceBusConnection "
                "to the emulator's connection string)"
            )
        if self._given_store is None and not self.settings.db_url:
            raise FunctionsConfigError(
                "FLOWORCH_DB_URL is not set: the Function App has no database (set it to the "
                "Azure SQL URL, see docs/deploy.md)"
            )

    async def _build(self) -> None:
        from floworch.engine.consumer import StepConsumer
        from floworch.engine.engine import Engine
        from floworch.runtime.servicebus.config import SendRetry
        from floworch.runtime.servicebus.connection import open_client
        from floworch.runtime.servicebus.cron import CronHub
        from floworch.runtime.servicebus.dispatcher import ServiceBusDispatcher
        from floworch.runtime.servicebus.triggers import TriggerMessageHandler

        self.check_config()
        settings = self.settings
        assert settings.connection is not None
        self._start_telemetry()
        store = self._given_store or await self._open_store()
        handle = open_client(settings.connection, SendRetry())
        sender = ServiceBusDispatcher(handle.client, topic=settings.steps_topic)
        dispatcher: Dispatcher = sender
        if self._wrap_dispatcher is not None:
            dispatcher = self._wrap_dispatcher(sender)
        engine = Engine(
            store=store,
            dispatcher=dispatcher,
            flows=self.flows,
            handlers=self.handlers,
            lease=self.options.lease,
        )
        await engine.sync_flows()
        policy = self.policy
        self._handle = handle
        self._sender = sender
        self._engine = engine
        self._consumer = StepConsumer(engine, policy=policy)
        self._cron = CronHub(engine, handle.client, queue=self.options.cron_queue, policy=policy)
        topic = self.options.triggers_topic
        self._triggers = TriggerMessageHandler(engine, policy=policy, topic=topic)
        self._unrouted = TriggerMessageHandler(engine, policy=policy, topic=topic, unrouted=True)
        log.info(
            "floworch Function App %s: %d flow(s), steps topic %s via %s, settlement %s",
            engine.core.owner,
            len(self.flows),
            settings.steps_topic,
            settings.connection.describe(),
            self.options.settlement.value,
        )

    def _start_telemetry(self) -> None:
        # Once per process (configure adopts providers already installed, e.g. by the Functions
        # host with PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true, and exports nothing twice).
        # A telemetry setting that cannot be used must not stop the app from running steps.
        from floworch.hosting.observability import start_telemetry
        from floworch.telemetry import TelemetrySettingsError

        try:
            start_telemetry(self.settings.environ, service_name=TELEMETRY_SERVICE)
        except (TelemetrySettingsError, ImportError) as exc:
            log.error("telemetry is off: %s", exc)

    async def _open_store(self) -> Store:
        from floworch.storage.factory import open_store

        assert self.settings.db_url is not None
        # The app's identity has no DDL rights: migrations are the deployment's job.
        return await open_store(self.settings.db_url, migrate=False)

    async def close(self) -> None:
        """Closes the client and the store (the local runner and tests; the host just exits)."""
        if self._sender is not None:
            await self._sender.close()
        if self._cron is not None:
            await self._cron.close()
        if self._handle is not None:
            await self._handle.close()
        if self._engine is not None and self._given_store is None:
            await self._engine.store.close()
        self._started = False
        self._engine = self._sender = self._handle = None
        self._cron = None

    # -- what the functions use ----------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine (after :meth:`start`)."""
        if self._engine is None:
            raise RuntimeError("the Functions runtime is not started")
        return self._engine

    @property
    def consumer(self) -> StepConsumer:
        assert self._consumer is not None, "the Functions runtime is not started"
        return self._consumer

    @property
    def cron(self) -> CronHub:
        assert self._cron is not None, "the Functions runtime is not started"
        return self._cron

    @property
    def triggers(self) -> TriggerMessageHandler:
        assert self._triggers is not None, "the Functions runtime is not started"
        return self._triggers

    @property
    def unrouted(self) -> TriggerMessageHandler:
        assert self._unrouted is not None, "the Functions runtime is not started"
        return self._unrouted

    @property
    def client(self) -> Any:
        """The engine's long-lived ``ServiceBusClient`` (after :meth:`start`)."""
        assert self._handle is not None, "the Functions runtime is not started"
        return self._handle.client

    async def asgi(self) -> ASGIApp:
        """The API app over the engine (built once)."""
        await self.start()
        if self._asgi is None:
            from floworch.api import AuthConfig, AuthMode, create_app
            from floworch.api.context import ApiOptions
            from floworch.hosting.http import webhook_secrets

            engine = self.engine
            auth = (
                AuthConfig(mode=AuthMode.APP_SERVICE)
                if self.settings.api_auth == "appservice"
                else AuthConfig.none()  # function keys at the trigger are the gate
            )
            secrets, warnings = webhook_secrets(engine.flows, self.settings.environ)
            for warning in warnings:
                log.warning("%s", warning)
            # The dashboard is served by the anonymous dashboard functions, not behind the key.
            self._asgi = create_app(
                engine,
                auth=auth,
                webhook_secrets=secrets,
                dead_letters=self._dead_letters,
                options=ApiOptions(dashboard=False),
            )
        return self._asgi

    def count_hold(self) -> None:
        self.held += 1

    async def _dead_letters(self) -> int:
        return self.dead_lettered

    # -- the background pass -------------------------------------------------------------------

    async def background_pass(self) -> bool:
        """Reconciles and seeds cron chains if this instance holds (or takes) the lease;
        returns whether it ran."""
        from floworch.engine.reconciler import ReconcilerSettings
        from floworch.storage.leases import HostLeases

        await self.start()
        engine = self.engine
        store = engine.store
        now = engine.clock.now()
        if isinstance(store, HostLeases):
            until = now + self.options.background_lease
            if not await store.acquire_lease(
                BACKGROUND_LEASE, engine.core.owner, until=until, now=now
            ):
                return False
        await engine.reconcile(
            ReconcilerSettings(unsent_grace=timedelta(seconds=5), lost_after=timedelta(seconds=60))
        )
        await self.cron.ensure_chains()
        self.background_passes += 1
        return True
