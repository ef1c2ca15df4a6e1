"""Concurrency, volume and hostile-client behaviour of the emulator (real aio SDK)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusError
from proton import Delivery, Message
from proton.utils import BlockingConnection, SendException

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.entities import QueueSettings, SubscriptionSettings, TopicSettings

pytestmark = [pytest.mark.emulator, pytest.mark.slow]


@pytest.fixture(scope="module")
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(max_message_size=64 * 1024) as emu:
        yield emu


def new_subscription(emulator: ServiceBusEmulator, **settings: object) -> tuple[str, str]:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    emulator.backend.create_topic(TopicSettings(name=topic))
    emulator.backend.create_subscription(
        SubscriptionSettings(topic_name=topic, name="s", **settings)  # type: ignore[arg-type]
    )
    return topic, "s"


async def send_numbered(emulator: ServiceBusEmulator, topic: str, count: int) -> None:
    async with (
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_topic_sender(topic) as sender,
    ):
        for start in range(0, count, 250):
            batch = await sender.create_message_batch()
            for i in range(start, min(start + 250, count)):
                batch.add_message(ServiceBusMessage(str(i)))
            await sender.send_messages(batch)


async def test_concurrent_receivers_never_share_a_locked_message(
    emulator: ServiceBusEmulator,
) -> None:
    topic, sub = new_subscription(emulator)
    total = 600
    await send_numbered(emulator, topic, total)
    seen: Counter[str] = Counter()
    locks: set[str] = set()

    async def worker(receiver: ServiceBusReceiver) -> None:
        while sum(seen.values()) < total:
            got = await receiver.receive_messages(max_message_count=3, max_wait_time=1)
            if not got:
                continue
            for msg in got:
                seen[str(msg)] += 1
                locks.add(str(msg.lock_token))
            await asyncio.sleep(0)
            for msg in got:
                await receiver.complete_message(msg)

    # A few clients with many concurrent receivers each: 4 x 25 = 100 receive loops.
    clients = [
        ServiceBusClient.from_connection_string(emulator.connection_string) for _ in range(4)
    ]
    receivers = [c.get_subscription_receiver(topic, sub) for c in clients for _ in range(25)]
    try:
        await asyncio.gather(*(r.__aenter__() for r in receivers))
        await asyncio.wait_for(asyncio.gather(*(worker(r) for r in receivers)), timeout=90)
    finally:
        await asyncio.gather(*(r.close() for r in receivers))
        await asyncio.gather(*(c.close() for c in clients))
    assert set(seen) == {str(i) for i in range(total)}
    assert max(seen.values()) == 1
    assert len(locks) == total


async def test_ten_thousand_messages_nothing_lost_or_duplicated(
    emulator: ServiceBusEmulator,
) -> None:
    topic, sub = new_subscription(emulator)
    total = 10_000
    await send_numbered(emulator, topic, total)
    seen: Counter[str] = Counter()
    async with (
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_subscription_receiver(topic, sub, prefetch_count=500) as receiver,
    ):
        deadline = time.monotonic() + 100
        while len(seen) < total and time.monotonic() < deadline:
            got = await receiver.receive_messages(max_message_count=500, max_wait_time=1)
            for msg in got:
                seen[str(msg)] += 1
                await receiver.complete_message(msg)
    assert len(seen) == total
    assert set(seen.values()) == {1}
    info = emulator.backend.get_subscription_runtime_info(topic, sub)
    assert info.active_message_count == 0


KILLED_RECEIVER = textwrap.dedent(
    """
    import sys, time
    from azure.servicebus import ServiceBusClient
    conn, topic, sub = sys.argv[1:4]
    client = ServiceBusClient.from_connection_string(conn)
    receiver = client.get_subscription_receiver(topic, sub)
    receiver.__enter__()
    got = []
    while len(got) < 3:
        got += receiver.receive_messages(max_message_count=3, max_wait_time=1)
    print("locked", len(got), flush=True)
    time.sleep(600)
    """
)


async def test_killed_client_releases_locks_on_expiry(emulator: ServiceBusEmulator) -> None:
    topic, sub = new_subscription(emulator, lock_duration=dt.timedelta(seconds=2))
    await send_numbered(emulator, topic, 3)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_RECEIVER,
        emulator.connection_string,
        topic,
        sub,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line.decode().strip() == "locked 3"
    finally:
        proc.kill()  # SIGKILL: the client never settles or detaches
        await proc.wait()
    async with (
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_subscription_receiver(topic, sub) as receiver,
    ):
        got: list[str] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            for msg in await receiver.receive_messages(max_message_count=3, max_wait_time=1):
                got.append(str(msg))
                assert msg.delivery_count == 1
                await receiver.complete_message(msg)
    assert sorted(got) == ["0", "1", "2"]


def test_raw_socket_garbage_does_not_crash_server(emulator: ServiceBusEmulator) -> None:
    payloads = [
        b"\x00" * 64,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"AMQP\x03\x01\x00\x00" + bytes(range(256)),
        b"AMQP\x00\x01\x00\x00\x00\x00\x00\xff\x02\x00\x00\x00" + b"\xff" * 300,
        b"AMQP\x00\x01\x00\x00",
    ]
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=1) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass
    queue = f"q-{uuid.uuid4().hex[:8]}"
    emulator.backend.create_queue(QueueSettings(name=queue))
    assert emulator.backend.get_queue_runtime_info(queue).active_message_count == 0


async def test_oversized_message_is_refused_and_server_stays_up(
    emulator: ServiceBusEmulator,
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    emulator.backend.create_queue(QueueSettings(name=queue))
    async with (
        ServiceBusClient.from_connection_string(emulator.connection_string) as client,
        client.get_queue_sender(queue) as sender,
    ):
        with pytest.raises((MessageSizeExceededError, ServiceBusError)):
            await sender.send_messages(ServiceBusMessage(b"x" * (200 * 1024)))
        await sender.send_messages(ServiceBusMessage("small"))
    assert emulator.backend.get_queue_runtime_info(queue).active_message_count == 1


def test_server_rejects_oversized_transfer_from_a_client_that_ignores_the_limit(
    emulator: ServiceBusEmulator,
) -> None:
    # The SDK checks the advertised max-message-size itself; a plain proton client does not,
    # so the server must refuse with amqp:link:message-size-exceeded (delivery rejected).
    queue = f"q-{uuid.uuid4().hex[:8]}"
    emulator.backend.create_queue(QueueSettings(name=queue))
    conn = BlockingConnection(f"amqp://127.0.0.1:{emulator.port}", timeout=10)
    try:
        sender = conn.create_sender(queue)
        with pytest.raises(SendException) as refused:
            sender.send(Message(body=b"x" * (100 * 1024)))
        assert refused.value.state == Delivery.REJECTED
        sender.send(Message(body="fits"))
    finally:
        conn.close()
    assert emulator.backend.get_queue_runtime_info(queue).active_message_count == 1
