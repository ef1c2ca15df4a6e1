"""A worker whose entities are missing says what to do, once per entity (issue 9.19)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from floworch.emulator import ServiceBusEmulator
from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.worker import WorkerHost, WorkerSettings
from floworch.model import load_manifest
from floworch.runtime.servicebus.config import ServiceBusConnection
from floworch.storage.factory import open_store
from floworch.storage.port import Store

from .conftest import declare_entities

pytestmark = pytest.mark.emulator


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}")
    yield opened
    await opened.close()


async def test_a_missing_subscription_is_reported_once_with_what_to_do(
    emulator: ServiceBusEmulator, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    sb = declare_entities(emulator, ["present"])  # "absent" has no subscription
    flows = [
        load_manifest({"id": name, "version": "1", "steps": {"a": {"type": "A"}}})
        for name in ("present", "absent")
    ]
    reg = HandlerRegistry()

    @reg.handler("A")
    async def a(ctx: object, inputs: object) -> None:
        return None

    host = WorkerHost(
        store=store,
        flows=flows,
        connection=ServiceBusConnection(connection_string=emulator.connection_string),
        handlers=reg,
        settings=WorkerSettings(servicebus=sb, grace=1.0, cron=False),
    )
    caplog.set_level(logging.DEBUG, logger="floworch")
    await host.start()
    try:
        pumps = [
            host.step_pumps["absent"],
            host.queue_pumps[f"{sb.triggers_topic}/Subscriptions/flow-absent"],
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while min(p.stats.receive_failures for p in pumps) < 2:
            assert loop.time() < deadline, "the pumps never retried the missing subscriptions"
            await asyncio.sleep(0.05)
        # /readyz answers 503 with this reason: what is not receiving, and what to do.
        readiness = await host.readiness()
        assert not readiness.ready
        assert readiness.reason is not None
        assert readiness.reason.startswith("not receiving from ")
        assert "flow-absent" in readiness.reason and "flow-present" not in readiness.reason
        assert "floworch topology apply" in readiness.reason
    finally:
        await host.stop()
    hints = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and "flow-absent" in r.getMessage()
    ]
    # One line per missing entity (its step and its trigger subscription), not one per retry.
    sources = sorted(r.getMessage().split()[2] for r in hints)
    expected = [
        f"{topic}/Subscriptions/flow-absent" for topic in (sb.steps_topic, sb.triggers_topic)
    ]
    assert sources == sorted(expected), [r.getMessage() for r in hints]
    for hint in hints:
        assert hint.levelno == logging.ERROR
        message = hint.getMessage()
        assert "does not exist" in message
        assert "floworch topology apply" in message and "--auto-create-topology" in message
    assert not [r for r in caplog.records if "flow-present" in r.getMessage() and r.levelno >= 30]
