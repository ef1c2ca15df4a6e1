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
from floworch.emulator.entities import (
    CorrelationFilter,
    QueueSettings,
    RuleSettings,
    SubscriptionSettings,
    TopicSettings,
)
from floworch.runtime.servicebus.config import ServiceBusSettings
from floworch.runtime.servicebus.names import FLOW_RULE_NAME, subscription_name
from floworch.storage.sql import migrate
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import to_async_url
from floworch.testing.servicebus import start_servicebus_emulator
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
    """Creates a fresh steps topic (one subscription per flow), cron and trigger queues."""
    suffix = uuid.uuid4().hex[:8]
    settings = ServiceBusSettings(
        steps_topic=f"steps-{suffix}",
        cron_queue=f"cron-{suffix}",
        triggers_queue=f"triggers-{suffix}",
        receive_wait=0.5,
    )

    lock = timedelta(seconds=lock_seconds)
    emulator.backend.create_topic(
        TopicSettings(name=settings.steps_topic, requires_duplicate_detection=duplicate_detection)
    )
    for flow_id in flow_ids:
        sub = subscription_name(flow_id)
        emulator.backend.create_subscription(
            SubscriptionSettings(
                topic_name=settings.steps_topic,
                name=sub,
                lock_duration=lock,
                max_delivery_count=max_delivery_count,
            )
        )
        emulator.backend.delete_rule(settings.steps_topic, sub, "$Default")
        emulator.backend.create_rule(
            RuleSettings(
                topic_name=settings.steps_topic,
                subscription_name=sub,
                name=FLOW_RULE_NAME,
                filter=CorrelationFilter(properties={"FlowId": flow_id}),
            )
        )
    for queue in (settings.cron_queue, settings.triggers_queue):
        emulator.backend.create_queue(
            QueueSettings(
                name=queue,
                requires_duplicate_detection=True,
                lock_duration=lock,
                max_delivery_count=max_delivery_count,
            )
        )
    return settings
