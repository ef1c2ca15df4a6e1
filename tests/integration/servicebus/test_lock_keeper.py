"""The lock keeper on the emulator with the real SDK: it keeps a short lock alive, stops by
itself after its renewal budget, and never leaves a renewal on the wire when the message is
settled (the SDK's AutoLockRenewer did, and the service's refusal was logged as an ERROR with a
traceback at every worker stop)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.entities import QueueSettings
from floworch.runtime.servicebus.lock_keeper import LockKeeper
from floworch.testing.consumer_contract import eventually

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


@pytest.fixture
async def locked(
    emulator: ServiceBusEmulator,
) -> AsyncIterator[tuple[ServiceBusReceiver, ServiceBusReceivedMessage]]:
    """A message received in peek-lock from a queue whose lock lasts 1 s."""
    name = f"q-{uuid.uuid4().hex[:8]}"
    emulator.backend.create_queue(QueueSettings(name=name, lock_duration=timedelta(seconds=1)))
    async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        async with client.get_queue_sender(name) as sender:
            await sender.send_messages(ServiceBusMessage(b"x"))
        async with client.get_queue_receiver(name, prefetch_count=0) as receiver:
            [message] = await receiver.receive_messages(max_message_count=1, max_wait_time=10)
            yield receiver, message


async def never_fails(message: ServiceBusReceivedMessage, error: Exception) -> None:
    pytest.fail(f"renewing the lock of {message.message_id} failed: {error!r}")


async def test_keeps_a_short_lock_alive_until_stopped(
    locked: tuple[ServiceBusReceiver, ServiceBusReceivedMessage],
) -> None:
    receiver, message = locked
    keeper = LockKeeper(receiver, message, max_renewal=timedelta(minutes=1), on_failure=never_fails)
    keeper.start()

    async def renewed_three_times() -> bool:
        return keeper.renewals >= 3

    # Three renewals of a 1 s lock: the original lock has long lapsed by then.
    await eventually(renewed_three_times, timeout=20, what="three lock renewals")
    await keeper.stop()
    assert not keeper.running
    await receiver.complete_message(message)  # raises MessageLockLostError had the lock lapsed


async def test_stops_renewing_after_its_budget(
    locked: tuple[ServiceBusReceiver, ServiceBusReceivedMessage],
) -> None:
    receiver, message = locked
    keeper = LockKeeper(
        receiver, message, max_renewal=timedelta(seconds=1.5), on_failure=never_fails
    )
    keeper.start()

    async def stopped() -> bool:
        return not keeper.running

    await eventually(stopped, timeout=20, what="the keeper to give up after 1.5 s")
    # Renewed at half of what is left of the lock: about every 0.5 s, so a few times at most.
    assert 1 <= keeper.renewals <= 4


async def test_stop_waits_for_a_renewal_in_flight_so_settling_never_races_it(
    locked: tuple[ServiceBusReceiver, ServiceBusReceivedMessage],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver, message = locked
    on_the_wire = asyncio.Event()
    answer = asyncio.Event()
    renew = receiver.renew_message_lock

    async def held_renewal(msg: ServiceBusReceivedMessage, **kwargs: object) -> object:
        on_the_wire.set()
        await answer.wait()  # the service has not answered yet
        return await renew(msg)

    receiver.renew_message_lock = held_renewal  # type: ignore[method-assign,assignment]
    keeper = LockKeeper(receiver, message, max_renewal=timedelta(minutes=1), on_failure=never_fails)
    keeper.start()
    await asyncio.wait_for(on_the_wire.wait(), 20)
    stopping = asyncio.create_task(keeper.stop())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not stopping.done(), "stop() returned while a renewal was on the wire"
    answer.set()
    await asyncio.wait_for(stopping, 20)
    assert keeper.renewals == 1 and not keeper.running
    with caplog.at_level(logging.WARNING):
        await receiver.complete_message(message)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
