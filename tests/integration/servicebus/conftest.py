"""Fixtures of the Service Bus runtime tests: one emulator per module, a fresh topic per test,
and (for tests that need a real SQL store) a migrated PostgreSQL schema per module."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine
from sqlalchemy.schema import CreateSchema, DropSchema

from floworch.emulator import ServiceBusEmulator
from floworch.runtime.servicebus.config import ServiceBusSettings
from floworch.storage.sql import migrate
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import to_async_url
from floworch.testing.servicebus import declare_flow_entities, start_servicebus_emulator
from tests.integration.storage.conftest import PG_SERVER_URL, require_postgres, schema_url


@pytest.fixture(scope="module")
def emulator() -> Iterator[ServiceBusEmulator]:
    emu = start_servicebus_emulator()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """The URL of a fresh, migrated schema for the module (dropped at the end)."""
    require_postgres()
    name = f"floworch_sb_{uuid.uuid4().hex[:10]}"
    engine = create_engine(PG_SERVER_URL)
    with engine.begin() as conn:
        conn.execute(CreateSchema(name))
    url = schema_url(name)

    async def up() -> None:
        store = SqlStore.from_url(to_async_url(url))
        try:
            await migrate.upgrade(store.engine)
        finally:
            await store.close()

    asyncio.run(up())
    try:
        yield url
    finally:
        with engine.begin() as conn:
            conn.execute(DropSchema(name, cascade=True))
        engine.dispose()


def declare_entities(
    emulator: ServiceBusEmulator,
    flow_ids: list[str],
    *,
    duplicate_detection: bool = True,
    lock_seconds: int = 60,
    max_delivery_count: int = 10,
) -> ServiceBusSettings:
    """Creates fresh steps and triggers topics (a subscription per flow) and a cron queue."""
    suffix = uuid.uuid4().hex[:8]
    settings = ServiceBusSettings(
        steps_topic=f"steps-{suffix}",
        cron_queue=f"cron-{suffix}",
        triggers_topic=f"triggers-{suffix}",
        receive_wait=0.5,
    )
    declare_flow_entities(
        emulator.backend,
        flow_ids,
        steps_topic=settings.steps_topic,
        triggers_topic=settings.triggers_topic,
        cron_queue=settings.cron_queue,
        lock_duration=timedelta(seconds=lock_seconds),
        max_delivery_count=max_delivery_count,
        duplicate_detection=duplicate_detection,
    )
    return settings
