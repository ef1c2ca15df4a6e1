"""The dispatcher port on Service Bus: step messages go to the steps topic, in batches, on one
long-lived sender; delays are scheduled messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from azure.core.exceptions import AzureError
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import MessageSizeExceededError, MessagingEntityNotFoundError

from floworch.engine.envelope import StepEnvelope
from floworch.errors import TransportError
from floworch.runtime.servicebus.messages import step_message
from floworch.runtime.servicebus.names import DEFAULT_STEPS_TOPIC

log = logging.getLogger("floworch.runtime.servicebus")


class ServiceBusDispatcher:
    """Sends step messages to the steps topic.

    The sender is opened on first use and kept; the SDK retries transient failures with
    exponential back-off (configured on the client). What still fails raises
    :class:`TransportError`: the engine leaves those ledger rows unsent and the reconciler sends
    them again.

    Args:
        client: the process's long-lived client (the dispatcher does not close it).
        topic: the steps topic.
    """

    def __init__(self, client: ServiceBusClient, *, topic: str = DEFAULT_STEPS_TOPIC) -> None:
        self._client = client
        self._topic = topic
        self._sender: ServiceBusSender | None = None
        self._opening = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._pending: list[tuple[list[ServiceBusMessage], asyncio.Future[None]]] = []
        self.sent = 0
        self.batches = 0

    @property
    def topic(self) -> str:
        """The topic step messages go to."""
        return self._topic

    async def _get_sender(self) -> ServiceBusSender:
        # Opened once under a lock: concurrent first sends on an unopened sender break its link.
        if self._sender is None:
            async with self._opening:
                if self._sender is None:
                    sender = self._client.get_topic_sender(self._topic)
                    try:
                        await sender.__aenter__()
                    except MessagingEntityNotFoundError as exc:
                        raise TransportError(self._missing_topic()) from exc
                    except AzureError as exc:
                        raise TransportError(
                            f"opening a sender on topic {self._topic!r} failed: {exc}"
                        ) from exc
                    self._sender = sender
        return self._sender

    async def open(self) -> None:
        """Opens the sender link now, so the first step message does not pay for it."""
        await self._get_sender()

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        if not envelopes:
            return
        try:
            await self._submit([step_message(e) for e in envelopes])
        except MessagingEntityNotFoundError as exc:
            raise TransportError(self._missing_topic()) from exc
        except AzureError as exc:
            raise TransportError(
                f"sending {len(envelopes)} step message(s) to topic {self._topic!r} failed: {exc}"
            ) from exc

    async def _submit(self, messages: list[ServiceBusMessage]) -> None:
        # The SDK's async sender is not safe for concurrent use, so sends are serialised; what
        # callers submit while a send is in flight goes out together in the next batch.
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((messages, done))
        async with self._send_lock:
            if not done.done():
                items, self._pending = self._pending, []
                try:
                    sender = await self._get_sender()
                    await self._send_batched(sender, [m for batch, _ in items for m in batch])
                except BaseException as exc:
                    for _, waiter in items:
                        if waiter is not done and not waiter.done():
                            waiter.set_exception(exc)
                    raise
                for _, waiter in items:
                    if not waiter.done():
                        waiter.set_result(None)
                self.sent += sum(len(batch) for batch, _ in items)
        await done

    async def _send_batched(
        self, sender: ServiceBusSender, messages: list[ServiceBusMessage]
    ) -> None:
        batch = await sender.create_message_batch()
        for message in messages:
            try:
                batch.add_message(message)
            except MessageSizeExceededError:
                if len(batch) == 0:
                    raise
                await sender.send_messages(batch)
                self.batches += 1
                batch = await sender.create_message_batch()
                batch.add_message(message)
        if len(batch):
            await sender.send_messages(batch)
            self.batches += 1

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        try:
            async with self._send_lock:
                sender = await self._get_sender()
                await sender.schedule_messages(step_message(envelope), at)
        except MessagingEntityNotFoundError as exc:
            raise TransportError(self._missing_topic()) from exc
        except AzureError as exc:
            raise TransportError(
                f"scheduling step message {envelope.message_id} for {at.isoformat()} on topic "
                f"{self._topic!r} failed: {exc}"
            ) from exc
        self.sent += 1

    def _missing_topic(self) -> str:
        return (
            f"the steps topic {self._topic!r} does not exist in the namespace; create it with "
            "`floworch topology apply` (or start the worker with --auto-create-topology)"
        )

    async def close(self) -> None:
        """Closes the sender (the client stays open; its owner closes it)."""
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                await sender.close()
            except AzureError as exc:  # closing a broken link must not mask the real error
                log.warning("closing the Service Bus sender failed: %s", exc)
