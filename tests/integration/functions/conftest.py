"""Fixtures of the Functions host tests: one emulator per module, fresh entities per test, the
order example's flows, and a Function App built for them driven by the local host."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from floworch.emulator import ServiceBusEmulator
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import Dispatcher
from floworch.hosting.functions import FunctionsOptions, FunctionsSettings, build_app
from floworch.hosting.functions.local import LocalFunctionsHost
from floworch.model import FlowManifest
from floworch.runtime.servicebus.config import ServiceBusConnection, ServiceBusSettings
from floworch.storage.port import Store
from floworch.testing.servicebus import start_servicebus_emulator
from tests.integration.servicebus.conftest import declare_entities, pg_url  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]
ORDER_FLOW = ROOT / "examples" / "order_fulfilment" / "flow.json"


@pytest.fixture(scope="module")
def emulator() -> Iterator[ServiceBusEmulator]:
    emu = start_servicebus_emulator()
    try:
        yield emu
    finally:
        emu.stop()


def app_settings(emulator: ServiceBusEmulator, sb: ServiceBusSettings) -> FunctionsSettings:
    return FunctionsSettings(
        flows_path=ROOT / "flows",
        db_url=None,
        connection=ServiceBusConnection(connection_string=emulator.connection_string),
        steps_topic=sb.steps_topic,
        api_auth="none",
        environ={},
    )


def fast_options(sb: ServiceBusSettings, **changes: object) -> FunctionsOptions:
    options = FunctionsOptions(
        cron_queue=sb.cron_queue,
        triggers_topic=sb.triggers_topic,
        hold=timedelta(seconds=2),
        lease=timedelta(seconds=2),
        background_lease=timedelta(seconds=5),
    )
    return replace(options, **changes)  # type: ignore[arg-type]


@asynccontextmanager
async def functions_host(
    emulator: ServiceBusEmulator,
    flows: Sequence[FlowManifest],
    handlers: HandlerRegistry,
    store: Store,
    *,
    sb: ServiceBusSettings | None = None,
    dispatcher: Callable[[Dispatcher], Dispatcher] | None = None,
    timer_every: timedelta | None = timedelta(milliseconds=300),
    environ: dict[str, str] | None = None,
    lock_renew_every: timedelta = timedelta(seconds=5),
    **options: object,
) -> AsyncIterator[LocalFunctionsHost]:
    """A Function App for ``flows`` on fresh entities, run by the local host."""
    sb = sb or declare_entities(emulator, [flow.id for flow in flows])
    settings = replace(app_settings(emulator, sb), environ=environ or {})
    app = build_app(
        flows,
        settings=settings,
        handlers=handlers,
        options=fast_options(sb, **options),
        store=store,
        dispatcher=dispatcher,
    )
    host = LocalFunctionsHost(
        app,
        connection_string=emulator.connection_string,
        timer_every=timer_every,
        lock_renew_every=lock_renew_every,
    )
    await host.start()
    try:
        yield host
    finally:
        await host.stop(grace=2.0)
        await app.runtime.close()
