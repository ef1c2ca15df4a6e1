"""A message pump: receives from one queue or subscription in peek-lock, runs a handler per
message with bounded concurrency, renews locks while it works, and settles each message by the
handler's verdict (the engine's :data:`~floworch.engine.consumer.Verdict`). The step processor,
the cron hub and the trigger queue all run on pumps.

- ``Complete``: complete the message.
- ``Retry(after)``: keep the message locked and hand it to the handler again after ``after``,
  for as long as the retry-in-place budget (``retry_in_place``, at most ``max_lock_renewal``)
  lasts; then abandon it, and Service Bus redelivers it. While it waits, a retrying message gives
  its concurrency slot to healthy messages (up to ``max_held`` messages wait that way at once;
  beyond that they wait in their slots, so an outage does not pull in more messages than that).
- ``DeadLetter(reason, description)``: dead-letter the message with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from azure.core.exceptions import AzureError
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import MessagingEntityNotFoundError

from floworch.engine.consumer import (
    COMPLETE,
    Complete,
    DeadLetter,
    Delivery,
    Retry,
    RetryPolicy,
    Verdict,
    failure_verdict,
)
from floworch.runtime.servicebus.lock_keeper import LockKeeper
from floworch.runtime.servicebus.messages import application_property
from floworch.telemetry.hooks import Telemetry
from floworch.telemetry.logs import log_context

log = logging.getLogger("floworch.runtime.servicebus.pump")


MessageHandler = Callable[[ServiceBusReceivedMessage, Delivery], Awaitable[Verdict]]
"""Decides a received message's verdict from the message and its delivery facts."""

__all__ = [
    "COMPLETE",
    "Complete",
    "DeadLetter",
    "Delivery",
    "MessageHandler",
    "MessagePump",
    "PumpStats",
    "Retry",
    "Source",
    "Verdict",
]


@dataclass(frozen=True)
class Source:
    """Where a pump receives from: a queue, or a topic subscription."""

    queue: str | None = None
    topic: str | None = None
    subscription: str | None = None

    def __post_init__(self) -> None:
        if (self.queue is None) == (self.topic is None or self.subscription is None):
            raise ValueError("a pump source is a queue, or a topic and a subscription")

    def __str__(self) -> str:
        return self.queue or f"{self.topic}/Subscriptions/{self.subscription}"

    def receiver(self, client: ServiceBusClient, prefetch: int) -> ServiceBusReceiver:
        if self.queue is not None:
            return client.get_queue_receiver(self.queue, prefetch_count=prefetch)
        assert self.topic is not None and self.subscription is not None
        return client.get_subscription_receiver(
            self.topic, self.subscription, prefetch_count=prefetch
        )


@dataclass
class PumpStats:
    """What a pump did, for health reports and tests."""

    received: int = 0
    completed: int = 0
    abandoned: int = 0
    dead_lettered: int = 0
    settle_failures: int = 0
    receive_failures: int = 0
    lock_renew_failures: int = 0
    retried_in_place: int = 0
    holding: int = 0
    """Messages waiting now for a retry in place without a concurrency slot."""


class MessagePump:
    """Runs ``handler`` on every message of ``source`` until stopped.

    Args:
        client: the process's long-lived client.
        source: queue or subscription.
        handler: decides each message's verdict (an exception it raises is judged by the
            engine's failure rules, as the step consumer would).
        concurrency: messages handled at once.
        prefetch: messages fetched ahead.
        max_lock_renewal: how long locks are kept alive while the handler works.
        receive_wait: the longest single receive wait (how quickly a stop is noticed).
        retry_in_place: how long a message whose verdict is ``Retry`` is kept locked and tried
            again, before it is abandoned.
        max_held: messages that may wait for a retry without holding a concurrency slot
            (default: ``concurrency``).
        max_delivery_count: the entity's max delivery count, when known: the last delivery of
            a message that keeps failing is dead-lettered with its real reason.
        policy: failure rules for exceptions the handler raises.
        telemetry: where dead letters are counted (default: the process's global providers).
    """

    def __init__(
        self,
        client: ServiceBusClient,
        source: Source,
        handler: MessageHandler,
        *,
        concurrency: int = 8,
        prefetch: int = 0,
        max_lock_renewal: timedelta = timedelta(minutes=5),
        receive_wait: float = 1.0,
        retry_in_place: timedelta = timedelta(seconds=60),
        max_held: int | None = None,
        max_delivery_count: int | None = None,
        policy: RetryPolicy | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.source = source
        self._telemetry = telemetry or Telemetry()
        # An infrastructure failure (database down) is retried while the message stays locked,
        # with back-off, for up to this long before abandoning: abandoning at once would burn
        # through the entity's max delivery count in seconds and dead-letter healthy messages.
        self._retry_in_place = min(retry_in_place, max_lock_renewal).total_seconds()
        self._max_held = concurrency if max_held is None else max_held
        self._max_delivery_count = max_delivery_count
        self._policy = policy or RetryPolicy()
        self._client = client
        self._handler = handler
        self._concurrency = concurrency
        self._prefetch = prefetch
        self._max_lock_renewal = max_lock_renewal.total_seconds()
        self._receive_wait = receive_wait
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._receiving = asyncio.Event()
        self._grace = 30.0
        self._missing_reported = False
        self.stats = PumpStats()

    @property
    def running(self) -> bool:
        """Whether the receive loop is alive."""
        return self._task is not None and not self._task.done()

    @property
    def receiving(self) -> bool:
        """Whether the receiver link is open (ready)."""
        return self._receiving.is_set() and self.running

    @property
    def inflight(self) -> int:
        """Messages being handled now."""
        return len(self._inflight)

    def start(self) -> None:
        """Starts the receive loop on the running event loop."""
        if self._task is not None:
            raise RuntimeError(f"the pump on {self.source} is already started")
        self._task = asyncio.create_task(self._run(), name=f"floworch-pump-{self.source}")

    async def wait_receiving(self, timeout: float) -> None:
        """Waits until the receiver link is open."""
        await asyncio.wait_for(self._receiving.wait(), timeout)

    async def stop(self, grace: float = 30.0) -> None:
        """Stops receiving, lets handlers in flight finish for up to ``grace`` seconds, abandons
        the rest, and closes the receiver."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        self._grace = grace
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._receive_until_stopped()
                return
            except asyncio.CancelledError:
                raise
            except AzureError as exc:
                self.stats.receive_failures += 1
                self._receiving.clear()
                self._log_receive_failure(exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 30.0)

    def _log_receive_failure(self, exc: AzureError, backoff: float) -> None:
        if not isinstance(exc, MessagingEntityNotFoundError):
            log.warning(
                "receiving from %s failed (%s); reconnecting in %.1f s", self.source, exc, backoff
            )
        elif not self._missing_reported:
            # Said once per entity: a missing entity stays missing until someone creates it.
            self._missing_reported = True
            kind = "queue" if self.source.queue is not None else "subscription"
            log.error(
                "the %s %s does not exist in the namespace: create it with `floworch topology "
                "apply` (or start the worker with --auto-create-topology); receiving from it is "
                "retried meanwhile",
                kind,
                self.source,
            )
        else:
            log.debug("%s still does not exist; retrying in %.1f s", self.source, backoff)

    async def _receive_until_stopped(self) -> None:
        receiver = self.source.receiver(self._client, self._prefetch)
        try:
            async with receiver:
                self._receiving.set()
                self._missing_reported = False
                while not self._stopping.is_set():
                    # One message per call: asked for more than arrive, the SDK keeps collecting
                    # for 0.2 s after the first, which every step would pay (measured: 2 ms vs
                    # 203 ms send -> receive). Prefetch keeps single receives cheap under load.
                    await self._slots.acquire()
                    try:
                        messages = await receiver.receive_messages(
                            max_message_count=1, max_wait_time=self._receive_wait
                        )
                    except BaseException:
                        self._slots.release()
                        raise
                    if not messages:
                        self._slots.release()
                    for message in messages:
                        self.stats.received += 1
                        if self._stopping.is_set():
                            # It arrived while the receive call waited and the stop began: a
                            # stopping worker takes no new work; another worker gets it now.
                            self._slots.release()
                            await self._give_back(receiver, message)
                            continue
                        task = asyncio.create_task(self._handle(receiver, message))
                        self._inflight.add(task)
                        task.add_done_callback(self._inflight.discard)
                await self._drain()
        finally:
            self._receiving.clear()

    async def _lock_renew_failed(
        self, message: ServiceBusReceivedMessage, error: Exception
    ) -> None:
        self.stats.lock_renew_failures += 1
        log.warning(
            "renewing the lock of message %s from %s failed: %r",
            message.message_id,
            self.source,
            error,
        )

    async def _drain(self) -> None:
        if not self._inflight:
            return
        _, pending = await asyncio.wait(set(self._inflight), timeout=self._grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning(
                "%d message(s) from %s still running after the %.0f s grace period; abandoned",
                len(pending),
                self.source,
                self._grace,
            )
            await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(
        self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage
    ) -> None:
        slot = _Slot()
        with log_context(
            flow_id=application_property(message, "FlowId"),
            run_id=application_property(message, "RunId"),
            step_key=application_property(message, "StepKey"),
        ):
            await self._handle_in_context(receiver, message, slot)

    async def _handle_in_context(
        self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage, slot: _Slot
    ) -> None:
        lock = LockKeeper(
            receiver,
            message,
            max_renewal=timedelta(seconds=self._max_lock_renewal),
            on_failure=self._lock_renew_failed,
        )
        lock.start()
        try:
            try:
                verdict = await self._decide(message, slot)
            except asyncio.CancelledError:
                stopping = Retry(timedelta(0), "the worker is stopping")
                settling = self._stop_renewing_and_settle(lock, receiver, message, stopping)
                await asyncio.shield(settling)
                raise
            await self._stop_renewing_and_settle(lock, receiver, message, verdict)
        finally:
            await lock.stop()
            if slot.held:
                self._slots.release()

    async def _stop_renewing_and_settle(
        self,
        lock: LockKeeper,
        receiver: ServiceBusReceiver,
        message: ServiceBusReceivedMessage,
        verdict: Verdict,
    ) -> None:
        # A renewal racing the settlement would fail on the service and be logged as an error.
        await lock.stop()
        await self._settle(receiver, message, verdict)

    async def _decide(self, message: ServiceBusReceivedMessage, slot: _Slot) -> Verdict:
        loop = asyncio.get_running_loop()
        received = loop.time()
        first_failure: float | None = None
        attempt = 1
        while True:
            now = loop.time()
            delivery = Delivery(
                str(message.message_id),
                # The AMQP header counts earlier deliveries (0 the first time).
                delivery_count=(message.delivery_count or 0) + 1,
                max_delivery_count=self._max_delivery_count,
                enqueued_at=message.enqueued_time_utc,
                attempt=attempt,
                failing_for=timedelta(seconds=0 if first_failure is None else now - first_failure),
                hold_remaining=timedelta(seconds=max(self._retry_in_place - (now - received), 0)),
            )
            try:
                verdict = await self._handler(message, delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # handlers return verdicts; this is the last resort
                log.exception("handling message %s from %s failed", message.message_id, self.source)
                verdict = failure_verdict(exc, delivery, self._policy)
            if not isinstance(verdict, Retry) or self._stopping.is_set():
                return verdict
            remaining = self._retry_in_place - (loop.time() - received)
            if verdict.after.total_seconds() > remaining:
                return verdict  # the budget is spent: abandon, Service Bus redelivers it
            if first_failure is None:
                first_failure = now
            self.stats.retried_in_place += 1
            log.warning(
                "message %s from %s: %s; trying again in %.1f s (the message stays locked)",
                message.message_id,
                self.source,
                verdict.why,
                verdict.after.total_seconds(),
            )
            await self._hold(verdict.after.total_seconds(), slot)
            if self._stopping.is_set():
                return verdict
            attempt += 1

    async def _hold(self, seconds: float, slot: _Slot) -> None:
        """Waits before a retry in place; gives the concurrency slot to healthy messages
        meanwhile, while fewer than ``max_held`` messages wait that way."""
        release = slot.held and self.stats.holding < self._max_held
        if release:
            self.stats.holding += 1
            slot.held = False
            self._slots.release()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)
        finally:
            if release:
                self.stats.holding -= 1
        if release and not self._stopping.is_set():
            await self._slots.acquire()
            slot.held = True

    async def _give_back(
        self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage
    ) -> None:
        log.info("stopping: handing message %s back to %s", message.message_id, self.source)
        try:
            await receiver.abandon_message(message)
            self.stats.abandoned += 1
        except AzureError as exc:  # its lock lapses instead, and Service Bus redelivers it
            log.warning("handing message %s back failed: %s", message.message_id, exc)

    async def _settle(
        self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage, verdict: Verdict
    ) -> None:
        try:
            if isinstance(verdict, Complete):
                await receiver.complete_message(message)
                self.stats.completed += 1
            elif isinstance(verdict, Retry):
                log.warning(
                    "abandoning message %s from %s (delivery %s): %s",
                    message.message_id,
                    self.source,
                    message.delivery_count,
                    verdict.why,
                )
                await receiver.abandon_message(message)
                self.stats.abandoned += 1
            else:
                log.error(
                    "dead-lettering message %s from %s: %s: %s",
                    message.message_id,
                    self.source,
                    verdict.reason,
                    verdict.description,
                )
                await receiver.dead_letter_message(
                    message, reason=verdict.reason, error_description=verdict.description[:1024]
                )
                self.stats.dead_lettered += 1
                self._telemetry.dead_lettered(verdict.reason, str(self.source))
        except AzureError as exc:
            # The lock was lost or the link broke: Service Bus redelivers the message, and the
            # step claim makes that redelivery harmless.
            self.stats.settle_failures += 1
            log.warning(
                "settling message %s from %s failed (%s); it will be redelivered",
                message.message_id,
                self.source,
                exc,
            )


@dataclass
class _Slot:
    """Whether a message's task holds one of the pump's concurrency slots."""

    held: bool = True
