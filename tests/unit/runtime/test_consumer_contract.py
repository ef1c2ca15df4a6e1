"""The step-consumer contract on the in-process runtime (the embedded host on a memory store
that fails on purpose)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from floworch.engine.engine import Engine
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.reconciler import ReconcilerSettings
from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings
from floworch.model import FlowManifest
from floworch.storage.memory import MemoryStore
from floworch.testing.consumer_contract import (
    ConsumerContract,
    DeadLettered,
    DispatcherWrapper,
    RuntimeUnderTest,
)
from floworch.testing.faulty_store import StoreFaults, faulty_store

SETTINGS = EmbeddedSettings(
    concurrency=4,
    tick=timedelta(milliseconds=100),
    reconciler=ReconcilerSettings(
        unsent_grace=timedelta(milliseconds=500), lost_after=timedelta(seconds=1)
    ),
    cron=False,
    lease=timedelta(seconds=2),
)


class InProcessRuntime:
    def __init__(self, host: EmbeddedHost) -> None:
        self.host = host

    @property
    def engine(self) -> Engine:
        return self.host.engine

    @property
    def retried(self) -> int:
        return self.host.dispatcher.retried

    async def send_raw(self, body: bytes, *, route_flow_id: str, message_id: str) -> None:
        self.host.dispatcher.deliver(body, message_id=message_id)

    async def dead_letters(self) -> list[DeadLettered]:
        return [DeadLettered(d.message_id, d.reason, d.description) for d in self.host.dead_letters]

    async def crash(self) -> None:
        await self.host.stop()


class InProcessEnvironment:
    timeout = 30.0

    def __init__(self) -> None:
        self.faults = StoreFaults()
        self.store = faulty_store(MemoryStore(), self.faults)

    @asynccontextmanager
    async def runtime(
        self,
        flows: Sequence[FlowManifest],
        handlers: HandlerRegistry,
        *,
        dispatcher: DispatcherWrapper | None = None,
    ) -> AsyncIterator[RuntimeUnderTest]:
        host = EmbeddedHost(
            store=self.store,
            flows=flows,
            handlers=handlers,
            settings=SETTINGS,
            dispatcher=dispatcher,
        )
        async with host:
            yield InProcessRuntime(host)

    async def set_store_down(self, down: bool) -> None:
        self.faults.down = down


class TestInProcessRuntime(ConsumerContract):
    @pytest.fixture
    async def environment(self) -> AsyncIterator[InProcessEnvironment]:
        yield InProcessEnvironment()
