"""Queue messaging through the real azure-servicebus SDK (sync) against the local emulator."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import MessageLockLostError, MessagingEntityNotFoundError

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.entities import QueueSettings

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def client(emulator: ServiceBusEmulator) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(emulator.connection_string) as sb:
        yield sb


def new_queue(emulator: ServiceBusEmulator, **settings: object) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    emulator.backend.create_queue(QueueSettings(name=name, **settings))  # type: ignore[arg-type]
    return name


def receive(
    receiver: ServiceBusReceiver, count: int, timeout: float = 20
) -> list[ServiceBusReceivedMessage]:
    got: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += receiver.receive_messages(max_message_count=count - len(got), max_wait_time=1)
    return got


def test_properties_round_trip(emulator: ServiceBusEmulator, client: ServiceBusClient) -> None:
    queue = new_queue(emulator)
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    props = {
        "text": "héllo",
        "int": 7,
        "float": 1.5,
        "flag": True,
        "when": when,
        "raw": b"\x00\x01",
        "FlowId": "flow-1",
    }
    sent = ServiceBusMessage(
        b"\x00binary body",
        message_id="m-1",
        correlation_id="corr",
        subject="subj",
        content_type="application/json",
        to="dest",
        reply_to="reply-q",
        partition_key="pk",
        time_to_live=dt.timedelta(minutes=5),
        application_properties=props,  # type: ignore[arg-type]
    )
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(sent)
    with client.get_queue_receiver(queue) as receiver:
        [msg] = receive(receiver, 1)
        locked_until = msg.locked_until_utc
        receiver.complete_message(msg)
    assert b"".join(msg.body) == b"\x00binary body"
    assert msg.message_id == "m-1"
    assert msg.correlation_id == "corr"
    assert msg.subject == "subj"
    assert msg.content_type == "application/json"
    assert msg.to == "dest"
    assert msg.reply_to == "reply-q"
    assert msg.partition_key == "pk"
    assert msg.time_to_live == dt.timedelta(minutes=5)
    assert msg.delivery_count == 0
    assert msg.sequence_number == 1
    assert msg.enqueued_time_utc is not None
    assert locked_until is not None and locked_until > msg.enqueued_time_utc
    assert msg.application_properties is not None
    got = {
        k.decode() if isinstance(k, bytes) else k: v for k, v in msg.application_properties.items()
    }
    assert got["text"] in ("héllo", "héllo".encode())
    assert got["int"] == 7 and got["float"] == 1.5
    assert got["flag"] is True
    assert got["raw"] == b"\x00\x01"
    assert int(got["when"]) == int(when.timestamp() * 1000) or got["when"] == when


def test_batch_send_and_receive_and_delete(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = new_queue(emulator)
    with client.get_queue_sender(queue) as sender:
        batch = sender.create_message_batch()
        for i in range(5):
            batch.add_message(ServiceBusMessage(f"b{i}"))
        sender.send_messages(batch)
        sender.send_messages([ServiceBusMessage("l0"), ServiceBusMessage("l1")])
    with client.get_queue_receiver(
        queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        got = receive(receiver, 7)
        assert [str(m) for m in got] == ["b0", "b1", "b2", "b3", "b4", "l0", "l1"]
        assert receiver.peek_messages(10) == []


def test_abandon_redelivers_with_incremented_delivery_count(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = new_queue(emulator)
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("again"))
    with client.get_queue_receiver(queue) as receiver:
        [first] = receive(receiver, 1)
        receiver.abandon_message(first)
        [second] = receive(receiver, 1)
        receiver.complete_message(second)
    assert (first.delivery_count, second.delivery_count) == (0, 1)
    assert first.sequence_number == second.sequence_number


def test_dead_letter_with_reason(emulator: ServiceBusEmulator, client: ServiceBusClient) -> None:
    queue = new_queue(emulator)
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("poison", application_properties={"k": "v"}))
    with client.get_queue_receiver(queue) as receiver:
        [msg] = receive(receiver, 1)
        receiver.dead_letter_message(msg, reason="bad-input", error_description="cannot parse")
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = receive(dlq, 1)
        dlq.complete_message(dead)
    assert str(dead) == "poison"
    assert dead.dead_letter_reason == "bad-input"
    assert dead.dead_letter_error_description == "cannot parse"


def test_defer_and_receive_deferred(emulator: ServiceBusEmulator, client: ServiceBusClient) -> None:
    queue = new_queue(emulator)
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage("later"), ServiceBusMessage("now")])
    with client.get_queue_receiver(queue) as receiver:
        first, second = receive(receiver, 2)
        receiver.defer_message(first)
        receiver.complete_message(second)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
        assert first.sequence_number is not None
        [deferred] = receiver.receive_deferred_messages([first.sequence_number])
        assert str(deferred) == "later"
        receiver.complete_message(deferred)
        assert receiver.peek_messages(5) == []


def test_peek_from_sequence_number(emulator: ServiceBusEmulator, client: ServiceBusClient) -> None:
    queue = new_queue(emulator)
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(f"p{i}") for i in range(6)])
    with client.get_queue_receiver(queue) as receiver:
        peeked = receiver.peek_messages(max_message_count=3, sequence_number=3)
        assert [(m.sequence_number, str(m)) for m in peeked] == [(3, "p2"), (4, "p3"), (5, "p4")]
        # peeking does not lock: everything is still receivable
        assert len(receive(receiver, 6)) == 6


def test_renew_lock_extends_locked_until(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = new_queue(emulator, lock_duration=dt.timedelta(seconds=5))
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("renew"))
    with client.get_queue_receiver(queue) as receiver:
        [msg] = receive(receiver, 1)
        before = msg.locked_until_utc
        time.sleep(0.2)
        after = receiver.renew_message_lock(msg)
        assert before is not None and after > before
        receiver.complete_message(msg)


def test_lock_expiry_redelivers_and_old_lock_is_lost(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = new_queue(emulator, lock_duration=dt.timedelta(seconds=1))
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("slow"))
    with client.get_queue_receiver(queue) as receiver:
        [first] = receive(receiver, 1)
        [second] = receive(receiver, 1, timeout=30)  # arrives once the first lock expires
        assert second.sequence_number == first.sequence_number
        assert second.delivery_count == 1
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(first)
        receiver.complete_message(second)


def test_max_delivery_count_moves_to_dead_letter(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = new_queue(emulator, max_delivery_count=3)
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("flaky"))
    deliveries = 0
    with client.get_queue_receiver(queue) as receiver:
        while got := receiver.receive_messages(max_message_count=1, max_wait_time=1):
            deliveries += 1
            receiver.abandon_message(got[0])
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = receive(dlq, 1)
        dlq.complete_message(dead)
    assert deliveries == 3
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"


def test_ttl_expiry_dead_letters_when_configured(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = new_queue(emulator, dead_lettering_on_message_expiration=True)
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(
            [
                ServiceBusMessage("short", time_to_live=dt.timedelta(seconds=1)),
                ServiceBusMessage("long"),
            ]
        )
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = receive(dlq, 1)
        dlq.complete_message(dead)
    assert str(dead) == "short"
    assert dead.dead_letter_reason == "TTLExpiredException"
    with client.get_queue_receiver(queue) as receiver:
        assert [str(m) for m in receive(receiver, 1)] == ["long"]


def test_ttl_expiry_drops_without_dead_lettering(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = new_queue(emulator, default_message_ttl=dt.timedelta(milliseconds=200))
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("gone"))
    time.sleep(0.5)
    info = emulator.backend.get_queue_runtime_info(queue)
    assert (info.active_message_count, info.dead_letter_message_count) == (0, 0)


def test_duplicate_detection_drops_repeated_message_id(
    emulator: ServiceBusEmulator, client: ServiceBusClient
) -> None:
    queue = new_queue(emulator, requires_duplicate_detection=True)
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("one", message_id="same"))
        sender.send_messages(ServiceBusMessage("two", message_id="same"))
        sender.send_messages(ServiceBusMessage("three", message_id="other"))
    with client.get_queue_receiver(
        queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        got = receive(receiver, 2)
        assert receiver.receive_messages(max_message_count=5, max_wait_time=1) == []
    assert [str(m) for m in got] == ["one", "three"]


def test_unknown_entity_raises_not_found(client: ServiceBusClient) -> None:
    with (
        pytest.raises(MessagingEntityNotFoundError),
        client.get_queue_sender("no-such-queue") as sender,
    ):
        sender.send_messages(ServiceBusMessage("x"))
    with (
        pytest.raises(MessagingEntityNotFoundError),
        client.get_queue_receiver("no-such-queue") as receiver,
    ):
        receiver.receive_messages(max_wait_time=1)
